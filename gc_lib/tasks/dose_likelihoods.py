"""Likelihoods of the CPA-style dose-response model (:mod:`gc_lib.tasks.dose_response`), and the checks and the
normalisation that count data need.

- **Gaussian** (log-scale profiles such as L1000's log2 values): a mean and a log-variance per gene.
- **Negative binomial** (UMI counts such as sci-Plex): a mean μ and an inverse dispersion θ per gene, variance
  μ + μ²/θ — the parameterisation of scVI (Lopez et al., "Deep generative modeling for single-cell
  transcriptomics", *Nature Methods* 2018) that CPA (Lotfollahi et al., *Molecular Systems Biology* 2023) uses for
  counts. The decoder gives μ as the cell's library size times a softmax over genes, so the log-likelihood is written
  on log μ (a log-softmax plus the log library, never exponentiated) and log θ: every term is a difference of logs
  taken with ``logaddexp`` or a ``lgamma``, which stays finite for counts of 0 and for large μ or θ.

The count model's encoder sees ``log1p(counts / library size × 10⁴)`` (:func:`log_normalise`), the usual
``normalize_total`` + ``log1p`` scale of single-cell analyses, standardised per gene by the model.
"""
from __future__ import annotations

import numpy as np
import torch
from anndata import AnnData
from torch.nn import functional as F

COUNTS_PER_CELL = 1e4   # the library size that normalised expression refers to (scanpy's normalize_total default)


def gaussian_nll(target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The mean Gaussian negative log-likelihood (with its constant) of ``target`` under ``mean`` and ``logvar``."""
    return F.gaussian_nll_loss(mean, target, logvar.exp(), full=True)


def nb_nll(counts: torch.Tensor, log_mean: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Element-wise negative-binomial negative log-likelihood of ``counts`` with mean ``exp(log_mean)`` and inverse
    dispersion ``exp(log_theta)`` (tensors that broadcast together; no reduction).

    ``log p(x) = lgamma(x + θ) − lgamma(θ) − lgamma(x + 1) + θ (log θ − log(θ + μ)) + x (log μ − log(θ + μ))``,
    which is ``scipy.stats.nbinom.logpmf(x, n=θ, p=θ / (θ + μ))``.
    """
    theta = log_theta.exp()
    log_theta_plus_mean = torch.logaddexp(log_theta, log_mean)
    log_prob = (torch.lgamma(counts + theta) - torch.lgamma(theta) - torch.lgamma(counts + 1)
                + theta * (log_theta - log_theta_plus_mean) + counts * (log_mean - log_theta_plus_mean))
    return -log_prob


def check_counts(values, where: str = "X") -> np.ndarray:
    """``values`` (cells × genes, dense or sparse) as a float32 array of counts, or a ValueError naming ``where`` and
    the problem: non-finite, negative or non-integer entries, or a cell without any counts."""
    array = values.toarray() if hasattr(values, "toarray") else np.asarray(values)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{where} must be cells × genes, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{where} holds missing or non-finite values; the negative-binomial model needs raw counts")
    if (array < 0).any():
        raise ValueError(f"{where} holds negative values (min {array.min():g}); the negative-binomial model needs "
                         "raw counts, not log-normalised or scaled values")
    fractional = array != np.round(array)
    if fractional.any():
        raise ValueError(f"{where} holds {int(fractional.sum())} non-integer values (e.g. {array[fractional][0]:g}); "
                         "the negative-binomial model needs raw counts (put them in layers['counts'])")
    empty = array.sum(1) == 0
    if empty.any():
        raise ValueError(f"{int(empty.sum())} cells have no counts in {where}; drop them first")
    return array.astype(np.float32)


def training_counts(adata: AnnData) -> np.ndarray:
    """The counts of ``adata``: ``layers['counts']`` when present, else ``X``, checked by :func:`check_counts`."""
    if "counts" in adata.layers:
        return check_counts(adata.layers["counts"], "layers['counts']")
    return check_counts(adata.X, "X")


def log_normalise(counts: np.ndarray) -> np.ndarray:
    """``log1p(counts / library size × 10⁴)`` per cell (float32); the library size is the cell's total count."""
    library = counts.sum(1, keepdims=True, dtype=np.float64)
    return np.log1p(counts / library * COUNTS_PER_CELL).astype(np.float32)
