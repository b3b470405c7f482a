"""The drug-response benchmark of notebook 08: baselines, the CPA-style and the DeepCE-style model with each gene-vector
variant, on the same held-out conditions, over seeds; one row of scores per (method, variant, seed, condition).

The split is made on conditions (:mod:`gc_lib.tasks.dose_splits`); the models train on the wells of the other
conditions and every control well, the baselines on the other conditions' means. The seed changes the models' initial
weights and batch order; the baselines are deterministic and scored once (seed 0). Nothing is chosen on the held-out
conditions: the models' settings are fixed before the split (their configs), and no epoch is picked.
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from .deepce import DeepCEConfig, fit_deepce, predict_deepce
from .dose_metrics import score_predictions
from .dose_response import DoseModelConfig, fit_dose_model, predict_dose
from .dose_splits import (
    BASELINES,
    UNSEEN_DRUG_BASELINES,
    Conditions,
    condition_means,
    held_out,
    held_out_drugs,
    predict_baseline,
)
from .fit_pool import cpu_cores, default_workers

MODELS = ("CPA-style", "DeepCE-style")


@dataclass(frozen=True)
class DoseBenchmark:
    """What to run: the plate's keys, seeds, gene-vector variants (name → matrix or ``None``), model configs."""

    drug_key: str
    dose_key: str
    control_value: str
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    variants: dict = field(default_factory=lambda: {"none": None})
    models: tuple[str, ...] = MODELS
    cpa: DoseModelConfig = DoseModelConfig()
    deepce: DeepCEConfig = DeepCEConfig()


def training_wells(adata: AnnData, bench: DoseBenchmark, conditions: Conditions, test: np.ndarray) -> AnnData:
    """The wells of ``adata`` outside the held-out conditions (controls always stay)."""
    held = conditions.table.loc[test, ["drug", "dose"]]
    keys = pd.MultiIndex.from_frame(held)
    wells = pd.MultiIndex.from_arrays([adata.obs[bench.drug_key].astype(str),
                                       pd.to_numeric(adata.obs[bench.dose_key], errors="coerce")])
    return adata[~wells.isin(keys)].copy()


def _predict_model(name: str, train: AnnData, bench: DoseBenchmark, seed: int, vectors, drugs, doses,
                   drug_features: pd.DataFrame | None) -> np.ndarray:
    keys = {"drug_key": bench.drug_key, "dose_key": bench.dose_key, "control_value": bench.control_value}
    if name == "CPA-style":
        if drug_features is not None:
            raise ValueError("the CPA-style model learns one embedding per drug; it takes no drug features")
        model, _ = fit_dose_model(train, **keys, config=bench.cpa, seed=seed, gene_embeddings=vectors)
        return predict_dose(model, drugs, doses)
    if name == "DeepCE-style":
        model, _ = fit_deepce(train, **keys, config=bench.deepce, seed=seed, gene_embeddings=vectors,
                              drug_features=drug_features)
        return predict_deepce(model, drugs, doses, drug_features=drug_features)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def _timed_job(args: tuple) -> tuple[np.ndarray, float]:
    """One model fit and prediction (``args`` as :func:`_predict_model` takes them, plus intra-op ``threads``:
    ``None`` leaves them as they are); its predictions and wall time."""
    *job, threads = args
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    start = time.perf_counter()
    return _predict_model(*job), time.perf_counter() - start


def _model_runs(jobs: list[tuple], workers: int | None) -> list[tuple[np.ndarray, float]]:
    """Every job, in job order: side by side in spawned one-thread-per-core workers, or here when one worker."""
    workers = default_workers(len(jobs)) if workers is None else max(1, min(workers, len(jobs)))
    if workers <= 1:
        return [_timed_job((*job, None)) for job in jobs]
    threads = max(1, cpu_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_timed_job, [(*job, threads) for job in jobs]))


def _run(adata: AnnData, bench: DoseBenchmark, conditions: Conditions, test: np.ndarray, baselines, models,
         drug_features: pd.DataFrame | None, workers: int | None) -> pd.DataFrame:
    """Scores of ``baselines`` and of every (model, variant, seed) on the conditions ``test`` holds out."""
    truth, held = conditions.means[test], conditions.table.loc[test, ["drug", "dose"]]

    def score(pred: np.ndarray) -> pd.DataFrame:
        return score_predictions(truth, pred, held, conditions.control_mean, conditions.control_sd)

    frames = []
    for name in baselines:
        start = time.perf_counter()
        scores = score(predict_baseline(name, conditions, test))
        frames.append(scores.assign(method=name, variant="-", seed=0, seconds=time.perf_counter() - start))
    train = training_wells(adata, bench, conditions, test)
    drugs, doses = held["drug"].tolist(), held["dose"].to_numpy()
    runs = [(model, variant, seed) for model in models for variant in bench.variants for seed in bench.seeds]
    jobs = [(model, train, bench, seed, bench.variants[variant], drugs, doses, drug_features)
            for model, variant, seed in runs]
    for (model, variant, seed), (pred, seconds) in zip(runs, _model_runs(jobs, workers)):
        frames.append(score(pred).assign(method=model, variant=variant, seed=seed, seconds=seconds))
    return pd.concat(frames, ignore_index=True)


def _conditions(adata: AnnData, bench: DoseBenchmark) -> Conditions:
    return condition_means(adata, drug_key=bench.drug_key, dose_key=bench.dose_key, control_value=bench.control_value)


def run_split(adata: AnnData, bench: DoseBenchmark, split: str, *, workers: int | None = None) -> pd.DataFrame:
    """Scores (one row per method, variant, seed and held-out condition, with a ``seconds`` column: that run's fit
    and prediction time) of every baseline and every model on the conditions dose ``split`` holds out.

    ``workers``: model fits side by side in processes (default one per core on a CPU machine, one on a GPU; see
    :mod:`gc_lib.tasks.fit_pool`): a fit's result does not depend on where it runs beyond summation order."""
    conditions = _conditions(adata, bench)
    test = held_out(conditions.table, split)
    return _run(adata, bench, conditions, test, BASELINES, bench.models, None, workers).assign(split=split)


def run_unseen_drugs(adata: AnnData, bench: DoseBenchmark, drug_features: pd.DataFrame, *, fraction: float = 0.2,
                     split_seed: int = 0, workers: int | None = None) -> pd.DataFrame:
    """Scores on every condition of held-out drugs (:func:`~gc_lib.tasks.dose_splits.held_out_drugs`): the baselines
    that can serve an unseen drug, and the DeepCE-style model on ``drug_features`` (drugs × features, e.g.
    fingerprints of their SMILES; the CPA-style model's learned drug embeddings cannot serve an unseen drug)."""
    conditions = _conditions(adata, bench)
    test = held_out_drugs(conditions.table, fraction, seed=split_seed)
    return _run(adata, bench, conditions, test, UNSEEN_DRUG_BASELINES, ("DeepCE-style",), drug_features,
                workers).assign(split="unseen_drug")
