"""The gene-perturbation benchmark of notebook 07: baselines, the linear model with each gene embedding, and GEARS's
variants, trained on one split's training conditions and scored on its test conditions, one row per (method,
variant, split seed, test perturbation).

Every method trains on ``split.train`` only; GEARS also uses ``split.validation`` to keep its best epoch (its own
design), the others choose nothing. The split seed changes which genes are seen (and GEARS's initial weights), so the
SD over split seeds covers both. Scores: :mod:`gc_lib.tasks.perturbseq_metrics`, with the test perturbation's kind
(:data:`gc_lib.tasks.perturbseq_data.KINDS`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .perturbseq_data import ConditionMeans, Split, condition_rows
from .perturbseq_linear import BASELINES, fit_linear, predict_baseline, predict_linear
from .perturbseq_metrics import score_perturbations

GEARS_MODES = ("published", "init", "similarity_graph")


@dataclass(frozen=True)
class PerturbBenchmark:
    """What to run. ``variants``: gene-vector name → genes × e matrix in ``adata.var`` order (``None`` entries are
    skipped: the linear model always has its PCA variant). ``gears``: a :class:`~gc_lib.tasks.gears_adapter
    .GearsConfig`, or ``None`` to leave GEARS out; ``gears_vectors``: the variant GEARS's ``init`` and
    ``similarity_graph`` modes take."""

    variants: dict = field(default_factory=dict)
    linear_k: int = 10
    ridge: float = 0.1
    gears: object | None = None
    gears_modes: tuple[str, ...] = GEARS_MODES
    gears_vectors: str = "genecompass"


def _timed(predict) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    return predict(), time.perf_counter() - start


def _linear_runs(means: ConditionMeans, split: Split, bench: PerturbBenchmark, symbols) -> list:
    """(method, variant, predictions, seconds) of the linear model: G from PCA, then G from each variant."""
    runs = []
    matrices = {"pca": None, **{k: v for k, v in bench.variants.items() if v is not None}}
    for name, matrix in matrices.items():
        def predict(matrix=matrix):
            model = fit_linear(means, split.train, symbols=symbols, gene_matrix=matrix, k=bench.linear_k,
                               ridge=bench.ridge)
            return predict_linear(model, split.test)
        runs.append(("linear", name, *_timed(predict)))
    return runs


def _gears_runs(adata: AnnData, split: Split, bench: PerturbBenchmark, seed: int, work_dir: Path) -> list:
    """(method, variant, predictions in ``adata.var`` order, seconds) of each GEARS mode."""
    from .gears_adapter import fit_gears, predict_gears

    vectors = bench.variants.get(bench.gears_vectors)
    order = None
    runs = []
    for mode in bench.gears_modes:
        if mode != "published" and vectors is None:
            raise ValueError(f"GEARS mode {mode!r} needs the {bench.gears_vectors!r} vectors in variants")

        def predict(mode=mode):
            handle = fit_gears(adata, split.train, split.validation, work_dir / f"seed{seed}_{mode}",
                               config=replace(bench.gears, seed=seed), embedding_mode=mode,
                               gene_embeddings=None if mode == "published" else vectors)
            return predict_gears(handle, split.test), handle.gene_names

        (pred, names), seconds = _timed(predict)
        if order is None:
            position = {g: i for i, g in enumerate(names)}
            order = np.array([position[g] for g in adata.var["gene_name"].astype(str)])
        variant = "-" if mode == "published" else bench.gears_vectors
        runs.append((f"GEARS ({mode})", variant, pred[:, order], seconds))
    return runs


def run_split(adata: AnnData, means: ConditionMeans, split: Split, bench: PerturbBenchmark, *, seed: int,
              work_dir: str | Path | None = None) -> pd.DataFrame:
    """Scores of every method on the test conditions of ``split``. ``adata``: GEARS's format with log-normalised X
    (the scale of ``means``) and ``var["gene_name"]``; ``work_dir``: GEARS's run folders (needed when it runs)."""
    symbols = adata.var["gene_name"].astype(str).tolist()
    test = list(split.test)
    truth = condition_rows(means, test)
    runs = [(name, "-", *_timed(lambda name=name: predict_baseline(name, means, split.train, test)))
            for name in BASELINES]
    runs += _linear_runs(means, split, bench, symbols)
    if bench.gears is not None:
        if work_dir is None:
            raise ValueError("GEARS needs a work_dir for its run folders")
        runs += _gears_runs(adata, split, bench, seed, Path(work_dir))
    frames = []
    for method, variant, pred, seconds in runs:
        scores = score_perturbations(truth, pred, test, means.control_mean, means.control_sd)
        frames.append(scores.assign(method=method, variant=variant, seed=seed, seconds=seconds,
                                    kind=[split.kind[c] for c in test]))
    return pd.concat(frames, ignore_index=True)
