"""Independent fine-tuning runs side by side, in worker processes (notebook 05 fits dozens of small models).

    jobs = [CellFitJob(train_cells, "cell_type", checkpoint, f"models/seed{s}", replace(config, seed=s))
            for s in range(5)]
    results = fit_cell_classifiers(jobs)          # FitResult per job, in order; reuse as fit_cell_classifier

Why: the hope was that two intra-op threads share a small model's (``d_model`` 128) small matrix products poorly, so
that several one-thread fits side by side would beat the same fits one after the other. Measured side by side
(``benchmarks/fit_pool.py``, ``benchmarks/RESULTS.md``: 4 pbmc68k fits of the local model on 2 cores) they do not:
0.95× (60.2 s one after the other, 63.1 s pooled, spawning the workers included), so on a 2-core machine the pool
buys nothing measurable; it may on machines with more cores than one fit uses. Every job is the plain
:func:`gc_lib.tasks.finetune.fit_cell_classifier` — same seeds, same files, same reuse-by-content — so where a run
goes never changes what it computes beyond floating-point summation order.

On a GPU the default is one job at a time (the jobs would share one device); pass ``workers`` to override.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from anndata import AnnData

from .finetune import FinetuneConfig, FitResult, fit_cell_classifier


@dataclass(frozen=True)
class CellFitJob:
    """The arguments of one :func:`~gc_lib.tasks.finetune.fit_cell_classifier` call."""
    adata: AnnData
    label_key: str
    checkpoint: Path
    out_dir: Path
    config: FinetuneConfig


def cpu_cores() -> int:
    """The cores this process may run on (the affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(n_jobs: int) -> int:
    """One process per core on a CPU machine (at most one per job); one when a GPU would be shared."""
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(n_jobs, cpu_cores()))


def _fit(job: CellFitJob, threads: int | None, reuse: bool) -> FitResult:
    """One job, in a worker (with ``threads`` intra-op threads) or inline (``threads`` None: left as they are)."""
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    return fit_cell_classifier(job.adata, job.label_key, job.checkpoint, job.out_dir, job.config, reuse=reuse,
                               progress=False)


def fit_cell_classifiers(jobs, *, workers: int | None = None, reuse: bool = False) -> list[FitResult]:
    """Run every :class:`CellFitJob` and return their :class:`~gc_lib.tasks.finetune.FitResult` in job order.

    ``workers``: processes run side by side (default :func:`default_workers`), each with ``cores // workers``
    threads; 1 runs the jobs here, one after the other. Workers are spawned (not forked: a forked PyTorch with live
    thread pools can hang), so each imports the library once. Two jobs may not write the same ``out_dir``. A job
    that fails raises here, after the running ones finish; the fits that completed stay on disk for ``reuse``."""
    jobs = list(jobs)
    folders = [Path(job.out_dir).resolve() for job in jobs]
    if len(set(folders)) < len(folders):
        raise ValueError("two jobs write the same out_dir; give each fit its own folder")
    workers = default_workers(len(jobs)) if workers is None else max(1, min(workers, len(jobs)))
    if workers <= 1:
        return [_fit(job, None, reuse) for job in jobs]
    threads = max(1, cpu_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_fit, job, threads, reuse) for job in jobs]
        return [future.result() for future in futures]
