"""Scores of predicted mean profiles of held-out perturbations (notebook 07), as GEARS and Ahlmann-Eltze et al.
report them. Per perturbation, with ``true`` and ``pred`` its mean profiles and ``control`` the control mean:

- ``pearson_delta``: Pearson r of ``pred − control`` and ``true − control`` over all genes (GEARS's headline);
- ``pearson_delta_de20``: the same over the perturbation's 20 most changed genes, ``|true − control| / control SD``
  largest (chosen from the truth, as GEARS's top-20 DE genes are);
- ``mse_de20``: mean squared error of ``pred`` on those 20 genes (GEARS; lower is better);
- ``l2_top1000``: Euclidean distance between ``pred`` and ``true`` over the 1,000 genes with the highest control mean
  (Ahlmann-Eltze et al.; lower is better).

A prediction of no change has no direction: its Pearson scores are NaN, never a number that could win.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .profile_scores import pearson, profile_deltas, score_table, top_de_genes

METRICS = ("pearson_delta", "pearson_delta_de20", "mse_de20", "l2_top1000")
LOWER_IS_BETTER = ("mse_de20", "l2_top1000")


def perturbation_scores(true: np.ndarray, pred: np.ndarray, control_mean: np.ndarray, control_sd: np.ndarray, *,
                        n_de: int = 20, n_top: int = 1000) -> dict[str, float]:
    """The metrics of the module docstring for one perturbation (profiles of one length, the genes)."""
    true, pred, true_delta, pred_delta = profile_deltas(true, pred, control_mean)
    de = top_de_genes(true_delta, control_sd, n_de)
    top = np.argsort(-control_mean, kind="stable")[:n_top]
    return {"pearson_delta": pearson(true_delta, pred_delta),
            "pearson_delta_de20": pearson(true_delta[de], pred_delta[de]),
            "mse_de20": float(np.mean((pred[de] - true[de]) ** 2)),
            "l2_top1000": float(np.linalg.norm(pred[top] - true[top]))}


def score_perturbations(truth: np.ndarray, predictions: np.ndarray, conditions, control_mean: np.ndarray,
                        control_sd: np.ndarray, **kwargs) -> pd.DataFrame:
    """One row per perturbation: ``condition`` and every metric."""
    return score_table(perturbation_scores, truth, predictions, pd.DataFrame({"condition": list(conditions)}),
                       control_mean, control_sd, **kwargs)
