"""Fine-tuning many small models: one after the other (every thread each) against side by side in worker
processes (one thread each, ``gc_lib.tasks.fit_pool.fit_cell_classifiers``), on the same jobs.

What: wall seconds to fit ``--jobs`` cell classifiers (notebook 05's settings: mean pooling, ``--epochs``,
``--max-genes``, batch 16; seeds 0, 1, …, each its own stratified 70 % of the cells) from one checkpoint, both
ways, repeated ``--repeats`` times in alternation (sequential, pooled, sequential, …) so drift in the machine's load
hits both alike; the median of each and their ratio. The fits are the same computation either way (the unit tests
check equal histories), so only the time differs.
Why: notebook 05 fits dozens of small models on 2 CPU cores; intra-op threads share a d_model-128 model's small
matrix products poorly.
How::

    .venv/bin/python -P benchmarks/fit_pool.py [--checkpoint data/03_pretraining/runs/main/checkpoint]
        [--cells data/00_data/datasets/pbmc68k_reduced.h5ad] [--jobs 4] [--epochs 3] [--max-genes 256]
        [--repeats 2] [--out build/bench/fit_pool.json]

Needs notebooks 00–03 run first (any profile; the checkpoint's size decides what is measured).
"""
import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import anndata as ad
import numpy as np
import torch

from gc_lib.core import paths
from gc_lib.core.atomic import write_json
from gc_lib.tasks import baselines, finetune
from gc_lib.tasks.fit_pool import CellFitJob, cpu_cores, fit_cell_classifiers


def jobs_for(cells: ad.AnnData, checkpoint: Path, root: Path, args) -> list[CellFitJob]:
    labels = cells.obs["cell_type"].astype(str).to_numpy()
    splits = baselines.stratified_splits(labels, range(args.jobs), 0.3)
    config = finetune.FinetuneConfig(epochs=args.epochs, batch_size=16, max_genes=args.max_genes, pooling="mean")
    return [CellFitJob(cells[train].copy(), "cell_type", checkpoint, root / f"seed{seed}",
                       replace(config, seed=seed))
            for seed, (train, _) in enumerate(splits)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=paths.DATA_DIR / "03_pretraining/runs/main/checkpoint")
    parser.add_argument("--cells", type=Path, default=paths.DATA_DIR / "00_data/datasets/pbmc68k_reduced.h5ad")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-genes", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("build/bench/fit_pool.json"))
    args = parser.parse_args()
    cells = ad.read_h5ad(args.cells)
    times = {"sequential": [], "pooled": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for way, workers in (("sequential", 1), ("pooled", None)):
                jobs = jobs_for(cells, args.checkpoint, Path(scratch) / f"{way}{repeat}", args)
                start = time.perf_counter()
                fit_cell_classifiers(jobs, workers=workers)
                times[way].append(time.perf_counter() - start)
                print(f"repeat {repeat}: {way} {times[way][-1]:.1f} s", flush=True)
    median = {way: statistics.median(t) for way, t in times.items()}
    result = {"checkpoint": str(args.checkpoint), "cells": str(args.cells), "jobs": args.jobs, "epochs": args.epochs,
              "max_genes": args.max_genes, "cores": cpu_cores(), "torch_threads_sequential": torch.get_num_threads(),
              "seconds": times, "median_seconds": median,
              "speedup_pooled_over_sequential": median["sequential"] / median["pooled"]}
    print(f"| way | median s ({args.jobs} fits, {cpu_cores()} cores) |\n|---|---|\n"
          + "\n".join(f"| {way} | {s:.1f} |" for way, s in median.items())
          + f"\n\nspeed-up of the pool: {result['speedup_pooled_over_sequential']:.2f}×")
    write_json(result, args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
