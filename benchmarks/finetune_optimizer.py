"""Fine-tuning's optimizer-side work, three ways on the same fit: the library's (only the gene-ID embedding rows the
training cells reach are trained, ``gc_lib.tasks._trained_rows``, with AdamW's fused kernel), the dense embedding
with the fused kernel, and the dense embedding with AdamW's ``foreach`` path (PyTorch's default on CPU).

What: wall seconds of one ``fit_cell_classifier`` (notebook 05's Baron settings on ``local``: ``--n-cells`` random
cells of one species, 4 epochs, 128 genes, batch 16, mean pooling) each way, repeated ``--repeats`` times in
alternation so drift in the machine's load hits all alike; the median of each, the ratios to the slowest, and the
largest difference in validation loss from the library's fit (the same updates, so it should be rounding).
Why: the gene-ID embedding (vocabulary × d_model, ~4.3 M weights on ``local``) gets a dense gradient every step
although a fit reaches a few thousand of its rows; zeroing, clipping and updating all of it costs time.
How::

    .venv/bin/python -P benchmarks/finetune_optimizer.py [--checkpoint data/03_pretraining/runs/main/checkpoint]
        [--cells data/00_data/datasets/baron_human.h5ad] [--n-cells 600] [--repeats 2]
        [--out build/bench/finetune_optimizer.json]

Needs notebooks 00–03 run first (any profile; the checkpoint's size decides what is measured).
"""
import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import anndata as ad
import numpy as np
import torch

from gc_lib.core import paths
from gc_lib.core.atomic import write_json
from gc_lib.tasks import _finetune_loop, _trained_rows, cross_species, finetune

FUSED_OPTIMIZER = _finetune_loop.optimizer_of


def foreach_optimizer(classifier, config) -> torch.optim.AdamW:
    """The library's optimizer (same groups, learning rates, weight decay) on AdamW's ``foreach`` path."""
    groups = [{k: v for k, v in group.items() if k not in ("fused", "foreach")}
              for group in FUSED_OPTIMIZER(classifier, config).param_groups]
    return torch.optim.AdamW(groups, foreach=True, fused=False)


WAYS = {"trained rows, fused AdamW (library)": {},
        "dense embedding, fused AdamW": {"attach": lambda encoder, rows: None},
        "dense embedding, foreach AdamW": {"attach": lambda encoder, rows: None, "optimizer_of": foreach_optimizer}}


def one_fit(cells: ad.AnnData, checkpoint: Path, out_dir: Path, way: str) -> tuple[float, list[float]]:
    config = finetune.FinetuneConfig(epochs=4, batch_size=16, max_genes=128, pooling="mean", seed=0)
    with contextlib.ExitStack() as patches:
        for name, replacement in WAYS[way].items():
            module = _trained_rows if name == "attach" else _finetune_loop
            patches.enter_context(mock.patch.object(module, name, replacement))
        start = time.perf_counter()
        fit = finetune.fit_cell_classifier(cells, "cell_type", checkpoint, out_dir, config, progress=False)
    return time.perf_counter() - start, fit.history["val_loss"].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=paths.DATA_DIR / "03_pretraining/runs/main/checkpoint")
    parser.add_argument("--cells", type=Path, default=paths.DATA_DIR / "00_data/datasets/baron_human.h5ad")
    parser.add_argument("--n-cells", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("build/bench/finetune_optimizer.json"))
    args = parser.parse_args()
    cells = ad.read_h5ad(args.cells)
    if cells.n_obs > args.n_cells:
        cells = cells[np.sort(np.random.default_rng(0).choice(cells.n_obs, args.n_cells, replace=False))].copy()
    cells, _, _ = cross_species.training_cells(cells)
    times, losses = {way: [] for way in WAYS}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for n, way in enumerate(WAYS):
                seconds, losses[way] = one_fit(cells, args.checkpoint, Path(scratch) / f"{n}_{repeat}", way)
                times[way].append(seconds)
                print(f"repeat {repeat}: {way} {seconds:.1f} s", flush=True)
    median = {way: statistics.median(t) for way, t in times.items()}
    library, slowest = next(iter(WAYS)), max(median.values())
    gaps = {way: float(np.max(np.abs(np.subtract(losses[way], losses[library])))) for way in WAYS}
    result = {"checkpoint": str(args.checkpoint), "cells": str(args.cells), "n_cells": int(cells.n_obs),
              "torch_threads": torch.get_num_threads(), "seconds": times, "median_seconds": median,
              "speedup_over_slowest": {way: slowest / m for way, m in median.items()},
              "largest_val_loss_difference_from_library": gaps}
    print(f"| way | median s (one fit, {torch.get_num_threads()} threads) | speed-up | largest val-loss gap |\n"
          "|---|---|---|---|\n" + "\n".join(f"| {way} | {m:.1f} | {slowest / m:.2f}× | {gaps[way]:.1e} |"
                                           for way, m in median.items()))
    write_json(result, args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
