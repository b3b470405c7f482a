"""Training-throughput benchmark: one full training step of our GeneCompass against HuggingFace ``BertForMaskedLM``.

What: tokens/s and cells/s of one training step (forward, backward, ``AdamW.step``, ``zero_grad``) of
``gc_lib.model.architecture.GeneCompass`` next to ``transformers.BertForMaskedLM`` of the same encoder size
(vocabulary, hidden
size, layers, heads, feed-forward size; eager attention, as the published GeneCompass / Geneformer stack use), on
the same inputs: the same token ids, the same 15 % masked positions (HF gets labels -100 elsewhere, as GeneCompass
does) and the same sequence length (HF gets the cell token too, so both see 1 + L positions). Ours also runs
without priors (``prior_dims={}``) and as the paper variant (``config.paper_variant()``: post-norm, raw value), so
the table shows what each choice costs.
Why: speed is a feature, measured next to the peer on the same machine and inputs (benchmarks/README.md).
How::

    .venv/bin/python -P benchmarks/train_throughput.py [--device cpu|cuda] [--cases tiny,small,realistic]
        [--steps N] [--epochs N] [--warmup N] [--threads N] [--batch N] [--out path.json]

Cases (CPU): ``tiny`` (2 layers, d 128, 2 heads, FFN 512, vocab 25,000, 512 gene tokens, batch 8, no padding),
``small`` (6 layers, d 256, 4 heads, FFN 1024, 1024 gene tokens, batch 2, no padding) and ``realistic`` (tiny size;
cell lengths drawn from the real corpus' ``length`` column, ``data/01_corpus/corpus/shards/*.parquet``, capped at
511, else from a lognormal, see ``LOGNORMAL``; a pool of cells is sorted by length and cut into 8 batches of 8: HF pads
every cell to 512 positions, as the published code pads to 2,048; ours pads each batch to its longest cell, and
also runs padded to 512 like HF to separate what bucketing buys from what the model buys).
GPU (``--device cuda``): ``base`` (12 layers, d 768, 2,047 gene tokens + the cell token = 2,048) and ``realistic``
at base size (lengths capped at 2,047, HF padded to 2,048); ours under bf16 autocast, HF eager under fp16
autocast with a GradScaler (the published recipe); also MFU (``model.flops_per_token`` × tokens/s ÷
``--peak-tflops``, the same FLOPs for both, so the HF figure is the useful fraction) and peak CUDA memory.

Timing: on CPU all models of a case are built first and their steps interleaved (round robin), so drift in the
machine's load hits them alike; on CUDA they run one after the other (for clean peak memory). ``--warmup`` steps
on the longest batch are excluded, then the median over ``--steps`` steps (``--epochs`` epochs over the pool, for
``realistic``). tokens/s counts real (non-pad) gene tokens; ratios are ours / HF. The forward, backward and
optimizer parts of each timed step are timed too (CUDA synchronised at each boundary), and on CPU the process' CPU
seconds (all threads), whose ratio is less sensitive than wall time to other processes sharing the cores.
Results: a markdown table on stdout, JSON to ``--out``.
"""
import os
import sys

if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    # benchmarks/ holds tokenize.py: with this folder first on sys.path it shadows the standard library's tokenize
    sys.exit("run this benchmark with `python -P benchmarks/train_throughput.py …`: -P keeps its folder off sys.path, "
             "where benchmarks/tokenize.py would shadow the standard library's tokenize")

import argparse
import gc
import json
import runpy
import shlex
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch

from gc_lib.model.architecture import PRESETS, GeneCompass, ModelConfig, build_model
from gc_lib.priors.store import PRIOR_NAMES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INPUTS = runpy.run_path(str(HERE / "_train_inputs.py"))  # the cells, batches and random priors both models see
VOCAB, PRIOR_DIM, SEED, PAD_ID = (INPUTS[k] for k in ("VOCAB", "PRIOR_DIM", "SEED", "PAD_ID"))
Batch, make_batches, random_priors = INPUTS["Batch"], INPUTS["make_batches"], INPUTS["random_priors"]
REPORT = runpy.run_path(str(HERE / "_report.py"))
md_table, cpu_facts = REPORT["md_table"], REPORT["cpu_facts"]


@dataclass(frozen=True)
class Case:
    name: str
    preset: str       # model size (gc_lib.model.architecture.PRESETS)
    length: int       # gene tokens of a full cell (sequence = 1 + length with the cell token)
    batch: int        # cells per step
    realistic: bool = False   # lengths from the corpus, bucketed; else every cell full length
    pool_batches: int = 0     # realistic: batches in the pool


CASES = {
    "cpu": {"tiny": Case("tiny", "tiny", 512, 8), "small": Case("small", "small", 1024, 2),
            "realistic": Case("realistic", "tiny", 511, 8, realistic=True, pool_batches=8)},
    "cuda": {"tiny": Case("tiny", "tiny", 512, 64), "small": Case("small", "small", 1024, 32),
             "base": Case("base", "base", 2047, 8),
             "realistic": Case("realistic", "base", 2047, 8, realistic=True, pool_batches=32)},
}
DEFAULT_CASES = {"cpu": "tiny,small,realistic", "cuda": "base,realistic"}


# ---------------------------------------------------------------- models and steps

def hf_model(config: ModelConfig) -> torch.nn.Module:
    from transformers import BertConfig, BertForMaskedLM
    hf_config = BertConfig(vocab_size=config.vocab_size, hidden_size=config.d_model,
                           num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
                           intermediate_size=config.d_ff, max_position_embeddings=config.max_len,
                           hidden_act="gelu", hidden_dropout_prob=config.dropout,
                           attention_probs_dropout_prob=config.dropout, pad_token_id=PAD_ID,
                           attn_implementation="eager")
    model = BertForMaskedLM(hf_config)
    if model.config._attn_implementation != "eager":
        raise RuntimeError(f"HF model runs {model.config._attn_implementation!r} attention, not eager")
    return model


@dataclass
class Runner:
    """A model, its AdamW and how it runs one step on a Batch."""
    label: str
    kind: str                   # "ours" or "hf"
    model: torch.nn.Module
    forward: Callable[[torch.nn.Module, Batch], torch.Tensor]
    device: str
    amp: torch.dtype | None = None
    optimizer: torch.optim.Optimizer = None
    scaler: object = None
    pad_to_hf: bool = False     # ours padded like HF (realistic case only)
    times: list[dict] = field(default_factory=list)   # per timed epoch: forward/backward/optimizer/total seconds
    peak_mb: float | None = None
    params: int = 0

    def __post_init__(self):
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.model.to(self.device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01)
        if self.amp is torch.float16:
            self.scaler = torch.amp.GradScaler("cuda")

    def sync(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def step(self, batch: Batch) -> dict:
        """One training step; seconds of its parts (wall) and ``cpu``, the process' CPU seconds (all threads)."""
        cpu = time.process_time()
        times = self._step(batch)
        return times | {"cpu": time.process_time() - cpu}

    def _step(self, batch: Batch) -> dict:
        t0 = self.sync()
        with torch.autocast(self.device, dtype=self.amp, enabled=self.amp is not None):
            loss = self.forward(self.model, batch)
        t1 = self.sync()
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        t2 = self.sync()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        t3 = self.sync()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.label}: loss is {loss.item()}")
        return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "total": t3 - t0}

    def epoch(self, batches: list[Batch]) -> dict:
        parts = [self.step(b) for b in batches]
        return {k: sum(p[k] for p in parts) for k in parts[0]}

    def medians(self) -> dict:
        return {k: statistics.median(t[k] for t in self.times) for k in self.times[0]}


def ours_forward(model, batch: Batch) -> torch.Tensor:
    return model(**batch.ours)["loss"]


def hf_forward(model, batch: Batch) -> torch.Tensor:
    return model(**batch.hf).loss


def runner_specs(case: Case, device: str) -> list[tuple[str, str, Callable[[], torch.nn.Module], dict]]:
    """(label, kind, model factory, extra Runner fields) for every model of a case."""
    base = ModelConfig.preset(case.preset, VOCAB, prior_dims={n: PRIOR_DIM for n in PRIOR_NAMES},
                              max_len=max(PRESETS[case.preset]["max_len"], case.length + 1))
    ours_amp, hf_amp = (torch.bfloat16, torch.float16) if device == "cuda" else (None, None)
    priors = random_priors(VOCAB)
    specs = [("HF BertForMaskedLM (eager)" + (", padded" if case.realistic else ""), "hf",
              lambda: hf_model(base), {"amp": hf_amp})]
    if case.realistic:
        specs += [("ours, padded like HF", "ours", lambda: build_model(base, priors),
                   {"amp": ours_amp, "pad_to_hf": True}),
                  ("ours, bucketed", "ours", lambda: build_model(base, priors), {"amp": ours_amp})]
    else:
        specs += [("ours", "ours", lambda: build_model(base, priors), {"amp": ours_amp}),
                  ("ours, no priors", "ours", lambda: build_model(ModelConfig(**{**base.to_dict(), "prior_dims": {}})),
                   {"amp": ours_amp}),
                  ("ours, paper variant", "ours", lambda: build_model(base.paper_variant(), priors), {"amp": ours_amp})]
    return specs


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_case(case: Case, args) -> dict:
    device, rng = args.device, np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    bucketed, padded, length_info = make_batches(case, device, rng)
    specs = runner_specs(case, device)
    interleave = device == "cpu"
    runners: list[Runner] = []
    rows = []

    def batches_of(r: Runner) -> list[Batch]:
        return padded if (r.kind == "hf" or r.pad_to_hf) else bucketed

    def measure(group: list[Runner]) -> None:
        for _ in range(args.warmup):
            for r in group:
                r.epoch(batches_of(r)[-1:])   # the longest batch
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(args.epochs if case.realistic else args.steps):
            for r in group:
                r.times.append(r.epoch(batches_of(r)))
        if device == "cuda":
            group[0].peak_mb = torch.cuda.max_memory_allocated() / 2**20

    if interleave:
        runners = [Runner(label, kind, make(), ours_forward if kind == "ours" else hf_forward, device, **extra)
                   for label, kind, make, extra in specs]
        measure(runners)
    else:
        for label, kind, make, extra in specs:
            r = Runner(label, kind, make(), ours_forward if kind == "ours" else hf_forward, device, **extra)
            measure([r])
            r.model, r.optimizer, r.scaler = None, None, None   # free it before the next one
            free(device)
            runners.append(r)
            print(f"  {case.name}: {label} done", flush=True)

    real_tokens = sum(b.real_tokens for b in bucketed)
    cells = sum(b.cells for b in bucketed)
    hf = runners[0]
    hf_med = hf.medians()
    seq_len = (length_info["mean"] if case.realistic else case.length) + 1   # useful positions, cell token included
    flops_per_token = GeneCompass.flops_per_token(SimpleNamespace(config=ModelConfig.preset(case.preset, VOCAB)),
                                                  int(round(seq_len)))   # config arithmetic only: no model built
    for r in runners:
        med = r.medians()
        rate = real_tokens / med["total"]
        row = {"model": r.label, "kind": r.kind, "params": r.params,
               "tokens_per_s": rate, "cells_per_s": cells / med["total"], "vs_hf": hf_med["total"] / med["total"],
               "vs_hf_cpu": hf_med["cpu"] / med["cpu"],
               "ms_per_step": 1e3 * med["total"] / len(batches_of(r)),
               "ms_per_epoch": {k: 1e3 * v for k, v in med.items()},
               "epoch_s_all": [t["total"] for t in r.times],
               "positions_per_step": statistics.mean(b.cells * (b.hf_len if r.kind == "hf"
                                                                 else b.ours_len + 1) for b in batches_of(r))}
        if device == "cuda":
            row["mfu"] = flops_per_token * rate / (args.peak_tflops * 1e12)
            row["peak_memory_mb"] = r.peak_mb
        rows.append(row)
    return {"case": case.name, "preset": case.preset, "length": case.length, "batch": case.batch,
            "realistic": case.realistic, "batches_per_epoch": len(bucketed), "real_tokens_per_epoch": real_tokens,
            "cells_per_epoch": cells, "lengths": length_info, "flops_per_token": flops_per_token, "models": rows}


# ---------------------------------------------------------------- report

def report(results: dict) -> str:
    cuda = results["device"] == "cuda"
    header = ["case", "model", "params", "positions/step", "ms/step", "fwd / bwd / opt ms per step", "tokens/s",
              "cells/s", "ours / HF"] + (["MFU", "peak MB"] if cuda else ["CPU s/step", "ours / HF by CPU s"])
    lines = []
    for c in results["cases"]:
        n = c["batches_per_epoch"]
        for m in c["models"]:
            e = m["ms_per_epoch"]
            lines.append([c["case"], m["model"], f"{m['params'] / 1e6:.2f}M" if m["params"] else "–",
                          f"{m['positions_per_step']:,.0f}", f"{m['ms_per_step']:,.0f}",
                          f"{e['forward'] / n:,.0f} / {e['backward'] / n:,.0f} / {e['optimizer'] / n:,.0f}",
                          f"{m['tokens_per_s']:,.0f}", f"{m['cells_per_s']:,.1f}",
                          "1.00×" if m["kind"] == "hf" else f"**{m['vs_hf']:.2f}×**"]
                         + ([f"{m['mfu']:.1%}", f"{m['peak_memory_mb']:,.0f}"] if cuda else
                            [f"{e['cpu'] / n / 1e3:.2f}", "1.00×" if m["kind"] == "hf" else f"{m['vs_hf_cpu']:.2f}×"]))
    return "\n".join(md_table(header, lines))


def machine(device: str) -> dict:
    info = cpu_facts() | {"threads": torch.get_num_threads()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--cases", help=f"comma-separated, of {sorted(CASES['cuda'])} (default cpu: "
                                   f"{DEFAULT_CASES['cpu']}; cuda: {DEFAULT_CASES['cuda']})")
    p.add_argument("--steps", type=int, default=5, help="timed steps of the full-length cases (default 5)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs over the pool of the realistic case (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first, on the longest batch (default 2)")
    p.add_argument("--batch", type=int, help="cells per step, for every case (default: per case)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="torch threads on CPU (default: the available cores)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="peak dense TFLOP/s for MFU (H100 bf16: 989)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args()
    args.cases = (args.cases or DEFAULT_CASES[args.device]).split(",")
    unknown = sorted(set(args.cases) - set(CASES[args.device]))
    if unknown:
        p.error(f"unknown cases {unknown} for {args.device}; known: {sorted(CASES[args.device])}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    import transformers
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": args.device,
               "machine": machine(args.device), "torch": torch.__version__, "transformers": transformers.__version__,
               "threads": torch.get_num_threads(), "steps": args.steps, "epochs": args.epochs, "warmup": args.warmup,
               "command": shlex.join([os.path.relpath(sys.executable, ROOT), "-P", *sys.argv]), "cases": []}
    for name in args.cases:
        case = CASES[args.device][name]
        if args.batch:
            case = Case(**{**case.__dict__, "batch": args.batch})
        start = time.perf_counter()
        results["cases"].append(run_case(case, args))
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    text = report(results)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=float))
        print(f"\n(written to {args.out})")


if __name__ == "__main__":
    main()
