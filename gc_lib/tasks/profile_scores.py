"""What the scores of predicted mean profiles share (drug response, notebook 08; gene perturbation, notebook 07):
checked inputs and their changes from the control mean, a condition's most changed genes, a Pearson r that is
NaN, never a number that could win, for a prediction of no change, and the table of one row per condition."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd


def profile_deltas(true, pred, control_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``true``, ``pred`` (float64) and their changes from ``control_mean``; ``ValueError`` for shapes that differ or
    a prediction with non-finite values."""
    true, pred = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if true.shape != pred.shape or true.shape != control_mean.shape:
        raise ValueError(f"true {true.shape}, pred {pred.shape} and control {control_mean.shape} must match")
    if not np.isfinite(pred).all():
        raise ValueError("the prediction holds non-finite values")
    return true, pred, true - control_mean, pred - control_mean


def top_de_genes(true_delta: np.ndarray, control_sd: np.ndarray, n_de: int) -> np.ndarray:
    """The ``n_de`` genes most changed in truth, ``|true − control| / control SD`` largest (genes without control
    variance last), as CPA's and GEARS's DE-gene metrics choose them: from the truth, never from a prediction."""
    scale = np.where(control_sd > 0, control_sd, np.inf)
    return np.argsort(-np.abs(true_delta) / scale, kind="stable")[:n_de]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of ``a`` and ``b``; NaN when either is constant (a prediction of no change has no direction)."""
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def score_table(score: Callable[..., dict[str, float]], truth: np.ndarray, predictions: np.ndarray,
                conditions: pd.DataFrame, control_mean: np.ndarray, control_sd: np.ndarray, **kwargs) -> pd.DataFrame:
    """One row per condition: the columns of ``conditions``, then the metrics ``score(true, pred, control_mean,
    control_sd, **kwargs)`` gives for its row of ``truth`` and ``predictions``."""
    if truth.shape != predictions.shape or len(truth) != len(conditions):
        raise ValueError(f"truth {truth.shape}, predictions {predictions.shape} and {len(conditions)} conditions "
                         "must agree")
    rows = [score(t, p, control_mean, control_sd, **kwargs) for t, p in zip(truth, predictions)]
    return pd.concat([conditions.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
