"""The simple predictors of perturbation outcomes that deep models have to beat (notebook 07), on pseudobulk profiles.

Ahlmann-Eltze, Huber & Anders (*Nature Methods* 2025, "Deep-learning-based gene perturbation effect prediction does
not yet outperform simple linear baselines") found that no deep model (GEARS, scGPT, scFoundation, CPA …) beat an
**additive** baseline on double perturbations or the **training mean** on unseen single ones, and that a linear model
``Y ≈ G K Pᵀ + b`` is a strong, cheap way to use a pretrained gene embedding:

- ``no_change``: the control mean;
- ``training_mean``: the mean of the training conditions' profiles;
- ``additive``: control + the sum of the training single-perturbation shifts of the condition's genes (a gene whose
  single perturbation is not in training adds nothing, so an unseen single gets the control mean);
- **linear model** (:func:`fit_linear`): ``Y`` (genes × training conditions) are the changes from control, ``b``
  their mean per gene; ``G`` (genes × k) a gene embedding — the top-k principal components of the training ``Y``
  (``G`` from data, the paper's default) or fixed vectors (GeneCompass, a prior, random …); a condition's embedding
  is the sum of its genes' rows of the same ``G`` (``P``, centred by its training mean ``p̄``, so the intercept ``b``
  and the embedding term do not compete); ``K`` minimises ``‖Y − b − G K (P − p̄)ᵀ‖² + λ‖K‖²``, in closed form
  ``K = (GᵀG + λI)⁻¹ Gᵀ (Y − b) (P − p̄) ((P − p̄)ᵀ(P − p̄) + λI)⁻¹``. A world that is exactly ``Y = G K Pᵀ`` is
  recovered exactly (up to the ridge).
  A condition whose genes are not rows of ``G`` (a gene not measured) cannot be predicted: a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inputs.gears_data import condition_genes
from .perturbseq_data import ConditionMeans, condition_rows

BASELINES = ("no_change", "training_mean", "additive")


def _single_shifts(means: ConditionMeans, train) -> dict[str, np.ndarray]:
    """Gene → the change from control of its single perturbation, for the singles among ``train``."""
    singles = [c for c in train if len(condition_genes(c)) == 1]
    return {condition_genes(c)[0]: row - means.control_mean for c, row in zip(singles, condition_rows(means, singles))}


def predict_baseline(name: str, means: ConditionMeans, train, targets) -> np.ndarray:
    """Predicted mean profiles (targets × genes) of baseline ``name`` from the ``train`` conditions only."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    train, targets = list(train), list(targets)
    if not train:
        raise ValueError("no training conditions")
    if name == "no_change":
        return np.tile(means.control_mean, (len(targets), 1))
    if name == "training_mean":
        return np.tile(condition_rows(means, train).mean(0), (len(targets), 1))
    shifts = _single_shifts(means, train)
    zero = np.zeros_like(means.control_mean)
    return np.stack([means.control_mean + sum((shifts.get(g, zero) for g in condition_genes(c)), zero)
                     for c in targets])


@dataclass(frozen=True)
class LinearModel:
    """A fitted ``Y ≈ G K (P − p̄)ᵀ + b``: ``gene_matrix`` G (genes × k, scaled to unit RMS), ``K`` (k × k),
    ``offset`` b (genes), ``embedding_mean`` p̄ (k), the control mean and the row of G per gene symbol (``row_of``)."""

    gene_matrix: np.ndarray
    K: np.ndarray
    offset: np.ndarray
    embedding_mean: np.ndarray
    control_mean: np.ndarray
    row_of: dict


def _embedding_of(model_rows: dict, matrix: np.ndarray, conditions) -> np.ndarray:
    """The sum of the rows of the conditions' genes (conditions × k); an error for a gene without a row."""
    missing = sorted({g for c in conditions for g in condition_genes(c) if g not in model_rows})
    if missing:
        raise ValueError(f"perturbed genes without a row in the gene embedding (not measured?): {missing[:5]}")
    return np.stack([sum(matrix[model_rows[g]] for g in condition_genes(c)) for c in conditions])


def _ridge(a: np.ndarray, ridge: float) -> np.ndarray:
    return np.linalg.inv(a.T @ a + ridge * np.eye(a.shape[1]))


def fit_linear(means: ConditionMeans, train, *, symbols, gene_matrix: np.ndarray | None = None, k: int = 10,
               ridge: float = 0.1) -> LinearModel:
    """Fit the linear model of the module docstring on the ``train`` conditions. ``symbols``: the gene symbol of each
    column of the profiles (conditions name genes by symbol). ``gene_matrix``: fixed gene vectors (genes × e, rows
    in the profiles' gene order); ``None`` takes the top-``k`` principal components of the training changes."""
    train = list(train)
    symbols = [str(s) for s in symbols]
    if len(symbols) != len(means.control_mean):
        raise ValueError(f"{len(symbols)} symbols for {len(means.control_mean)} genes")
    Y = (condition_rows(means, train) - means.control_mean).T                      # genes × conditions
    offset = Y.mean(1)
    centred = Y - offset[:, None]
    if gene_matrix is None:
        u, _, _ = np.linalg.svd(centred, full_matrices=False)
        G = u[:, :min(k, u.shape[1])]
    else:
        G = np.asarray(gene_matrix, dtype=np.float64)
        if G.shape[0] != len(symbols) or G.ndim != 2 or not np.isfinite(G).all():
            raise ValueError(f"gene_matrix must be a finite genes × e matrix with {len(symbols)} rows, "
                             f"got shape {G.shape}")
    rms = np.sqrt(np.mean(G ** 2))
    G = G / rms if rms > 0 else G
    row_of = {s: i for i, s in enumerate(symbols)}
    P = _embedding_of(row_of, G, train)
    p_mean = P.mean(0)
    K = _ridge(G, ridge) @ G.T @ centred @ (P - p_mean) @ _ridge(P - p_mean, ridge)
    return LinearModel(G, K, offset, p_mean, means.control_mean, row_of)


def predict_linear(model: LinearModel, conditions) -> np.ndarray:
    """Predicted mean profiles (conditions × genes) of a :class:`LinearModel`: control + b + G K (P − p̄)."""
    P = _embedding_of(model.row_of, model.gene_matrix, list(conditions)) - model.embedding_mean
    return model.control_mean + model.offset + (model.gene_matrix @ model.K @ P.T).T
