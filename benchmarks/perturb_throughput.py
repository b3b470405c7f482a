"""The perturbation engine (``gc_lib.tasks.perturb``) against a per-cell loop in the style of the published perturbers
(``gc_lib.tasks._perturb_loop``: one cell at a time, its perturbed copies built as Python lists and run in
mini-batches, gene shifts gathered gene by gene) — the same model, cells, perturbations and outputs.

What: (cell, perturbation) pairs per second of each, over ``--repeats`` alternating runs (median), their ratio, and
the largest difference between the two outputs (cell shifts, goal shifts, per-gene mean shifts: rounding only).
Work: every cell × deletion of each of ``--deletions`` genes (only where the cell expresses it; ``--deletion-rank``
picks how common they are) and overexpression of ``--overexpressions`` genes (every cell; most are inserted), with a
goal and one alternative state. Also timed: the model's forward passes alone over the same perturbed and unperturbed
cells in full batches (the floor any exact perturber must pay), so each way's ratio to that floor is visible.
Why: a screen perturbs every candidate TF in hundreds of cells; the loop's cost is per cell and per perturbation
in Python, the engine's is batched tensor work.
How::

    .venv/bin/python -P benchmarks/perturb_throughput.py [--device cpu|cuda] [--preset tiny] [--cells 64]
        [--length 256] [--vocab 4000] [--deletions 64] [--deletion-rank 0] [--overexpressions 16] [--batch-size 64]
        [--repeats 3]
        [--out build/bench/perturb_throughput.json]

Model: a randomly initialised ``--preset`` model (its weights do not change the cost); cells: synthetic token ids
drawn with Zipf-like frequencies so common genes sit in most cells, values descending as the tokenizer writes them.
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gc_lib.core.atomic import write_json
from gc_lib.model.architecture import ModelConfig, build_model
from gc_lib.tasks._perturb_loop import perturb_loop
from gc_lib.tasks.cell_tokens import CellTokens
from gc_lib.tasks.perturb import perturb
from gc_lib.tasks.perturb_edits import PerturbationSet, overexpression_values


def synthetic_cells(n_cells: int, length: int, vocab: int, seed: int = 0) -> CellTokens:
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, vocab - 3) ** 0.8
    ids, values = [], []
    for _ in range(n_cells):
        n = int(rng.integers(length // 2, length + 1))
        cell = rng.choice(np.arange(4, vocab), n, replace=False, p=weight / weight.sum())
        ids.append(cell.astype(np.int64))
        values.append(np.sort(rng.gamma(2.0, 1.0, n)).astype(np.float32)[::-1].copy())
    return CellTokens(ids, values, rng.integers(0, 2, n_cells))


def forward_floor(model, cells: CellTokens, perturbations: PerturbationSet, high: np.ndarray, batch_size: int,
                  device: str) -> float:
    """Seconds of the model's forward passes alone over the same perturbed cells and the unperturbed ones, in full
    batches built beforehand (untimed): what any exact perturber must spend, so the floor of both ways."""
    from gc_lib.tasks.cell_tokens import collate
    from gc_lib.tasks.perturb_edits import apply_edits

    index = np.arange(len(cells))
    base = collate(cells, index)
    ids, values = base["input_ids"], base["values"]
    genes = torch.as_tensor(perturbations.genes)
    holds = (ids.unsqueeze(-1).unsqueeze(-1) == genes).any(1).any(-1)                 # (cells, perturbations)
    overexpress = torch.as_tensor([k == "overexpress" for k in perturbations.kind_names()])
    cell_of, pert_of = torch.nonzero(holds | overexpress, as_tuple=True)
    high_t = torch.as_tensor(np.nan_to_num(high), dtype=torch.float32)
    batches = [collate(cells, index[i:i + batch_size]) for i in range(0, len(index), batch_size)]
    for start in range(0, len(cell_of), batch_size):
        c, p = cell_of[start:start + batch_size], pert_of[start:start + batch_size]
        new_ids, new_values, *_ = apply_edits(ids[c], values[c], genes[p], torch.as_tensor(perturbations.kind)[p],
                                             torch.as_tensor(perturbations.factor, dtype=torch.float32)[p],
                                             high_t[genes[p].clamp_min(0)], model.config.max_len - 1)
        batches.append({"input_ids": new_ids, "values": new_values, "species": base["species"][c],
                         "attention_mask": new_ids != 0})
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            model.encode(**batch)
    _sync(device)
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def outputs_gap(a, b) -> float:
    """The largest absolute difference between two results' cell statistics and per-gene mean shifts."""
    columns = [c for c in a.cells.columns if c not in ("name",)]
    cell_gap = np.max(np.abs(a.cells[columns].to_numpy(float) - b.cells[columns].to_numpy(float)))
    genes = a.genes.merge(b.genes, on=["perturbation", "token"], how="outer", indicator=True)
    if (genes["_merge"] != "both").any():
        return float("inf")
    return float(max(cell_gap, np.max(np.abs(genes["mean_shift_x"] - genes["mean_shift_y"]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--cells", type=int, default=64)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--deletions", type=int, default=64)
    parser.add_argument("--deletion-rank", type=int, default=0,
                        help="frequency rank of the first deleted gene: 0 deletes the commonest genes (in almost every "
                             "cell, many deletions per cell); a few hundred, genes as rare in cells as most TFs")
    parser.add_argument("--overexpressions", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("build/bench/perturb_throughput.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_model(ModelConfig.preset(args.preset, args.vocab, dropout=0.0)).eval()
    cells = synthetic_cells(args.cells, args.length, args.vocab)
    perturbations = PerturbationSet.concat([
        PerturbationSet.build(list(range(4 + args.deletion_rank, 4 + args.deletion_rank + args.deletions)), "delete"),
        PerturbationSet.build(list(range(args.vocab - args.overexpressions, args.vocab)), "overexpress")])
    high = overexpression_values(cells.ids, cells.values, args.vocab)
    rng = np.random.default_rng(1)
    kwargs = dict(high_values=high, goal=rng.normal(size=model.config.d_model),
                  alternatives={"other": rng.normal(size=model.config.d_model)}, device=args.device)
    ways = {"engine": lambda: perturb(model, cells, perturbations, batch_size=args.batch_size, progress=False,
                                      **kwargs),
            "per-cell loop": lambda: perturb_loop(model, cells, perturbations, forward_batch_size=args.batch_size,
                                                  **kwargs)}
    seconds, results, floor = {way: [] for way in ways}, {}, []
    model.to(args.device)
    for repeat in range(args.repeats):
        for way, run in ways.items():
            _sync(args.device)
            start = time.perf_counter()
            results[way] = run()
            _sync(args.device)
            seconds[way].append(time.perf_counter() - start)
            print(f"repeat {repeat}: {way} {seconds[way][-1]:.2f} s", flush=True)
        floor.append(forward_floor(model, cells, perturbations, high, args.batch_size, args.device))
        print(f"repeat {repeat}: forward passes alone {floor[-1]:.2f} s", flush=True)
    pairs = len(results["engine"].cells)
    median = {way: statistics.median(s) for way, s in seconds.items()}
    rate = {way: pairs / m for way, m in median.items()}
    threads = f"cpu ({torch.get_num_threads()} threads)"
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else threads
    floor_median = statistics.median(floor)
    result = {"device": device, "args": {k: str(v) for k, v in vars(args).items()}, "pairs": pairs,
              "seconds": seconds, "median_seconds": median, "pairs_per_second": rate,
              "forward_floor_seconds": floor,
              "ratio_to_forward_floor": {way: m / floor_median for way, m in median.items()},
              "ratio_engine_over_loop": rate["engine"] / rate["per-cell loop"],
              "largest_output_difference": outputs_gap(results["engine"], results["per-cell loop"])}
    print("| way | median s | (cell, perturbation) pairs/s |\n|---|---|---|\n" +
          "\n".join(f"| {way} | {median[way]:.2f} | {rate[way]:,.0f} |" for way in ways) +
          f"\n\n{pairs:,} pairs on {device}; engine / loop {result['ratio_engine_over_loop']:.1f}×; largest output "
          f"difference {result['largest_output_difference']:.1e}; the forward passes alone take {floor_median:.2f} s "
          f"(engine {median['engine'] / floor_median:.2f}× that floor, "
          f"loop {median['per-cell loop'] / floor_median:.2f}×)")
    write_json(result, args.out)


if __name__ == "__main__":
    main()
