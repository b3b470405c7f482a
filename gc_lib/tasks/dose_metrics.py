"""Scores of predicted mean profiles of held-out conditions (notebook 08), per condition, then summarised over seeds.

Per held-out condition, with ``true`` and ``pred`` its mean profiles and ``control`` the mean control profile:

- ``r2_all``: R² of ``pred`` against ``true`` over all genes (CPA's headline metric; close to 1 for any sensible
  prediction, because genes differ in baseline level far more than drugs move them);
- ``r2_de20``: the same over the condition's 20 most changed genes, ``|true − control| / control SD`` largest (CPA's
  "DE genes" metric: the genes are chosen from the truth of that condition, as CPA does, never from a prediction);
- ``pearson_delta``: Pearson r of the changes ``pred − control`` and ``true − control`` over all genes (NaN for a
  prediction of no change, which has no direction);
- ``precision_up`` / ``precision_down``: DeepCE's precision@k (Pham et al. 2021): the share of the k genes predicted
  most up (down) that are among the k most up (down) in truth (NaN for a prediction of no change).

:func:`gc_lib.tasks.seed_summary.summarise` then averages the per-condition scores within each seed and gives mean and
SD over seeds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .profile_scores import pearson, profile_deltas, score_table, top_de_genes

METRICS = ("r2_all", "r2_de20", "pearson_delta", "precision_up", "precision_down")


def _r2(true: np.ndarray, pred: np.ndarray) -> float:
    total = np.sum((true - true.mean()) ** 2)
    return float(1.0 - np.sum((true - pred) ** 2) / total) if total > 0 else float("nan")


def _precision(true_delta: np.ndarray, pred_delta: np.ndarray, k: int, sign: int) -> float:
    if not np.any(pred_delta):
        return float("nan")
    top_true = np.argsort(-sign * true_delta, kind="stable")[:k]
    top_pred = np.argsort(-sign * pred_delta, kind="stable")[:k]
    return len(np.intersect1d(top_true, top_pred)) / k


def condition_scores(true: np.ndarray, pred: np.ndarray, control_mean: np.ndarray, control_sd: np.ndarray, *,
                     n_de: int = 20, k: int = 100) -> dict[str, float]:
    """The metrics of the module docstring for one condition (profiles of one length, the genes)."""
    true, pred, true_delta, pred_delta = profile_deltas(true, pred, control_mean)
    k = min(k, len(true))
    de = top_de_genes(true_delta, control_sd, n_de)
    return {"r2_all": _r2(true, pred), "r2_de20": _r2(true[de], pred[de]),
            "pearson_delta": pearson(true_delta, pred_delta),
            "precision_up": _precision(true_delta, pred_delta, k, +1),
            "precision_down": _precision(true_delta, pred_delta, k, -1)}


def score_predictions(truth: np.ndarray, predictions: np.ndarray, conditions: pd.DataFrame, control_mean: np.ndarray,
                      control_sd: np.ndarray, **kwargs) -> pd.DataFrame:
    """One row per held-out condition (the columns of ``conditions``, e.g. drug and dose, plus every metric)."""
    return score_table(condition_scores, truth, predictions, conditions, control_mean, control_sd, **kwargs)
