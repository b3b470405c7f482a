"""Cell quality control (DESIGN.md §1): per-cell metrics on contract AnnData, and the corpus builder's
per-dataset rules applied to metrics computed chunk by chunk.

Metrics (:func:`cell_qc_metrics`): total counts, expressed genes, the fraction of counts in mitochondrially
encoded genes. Rules, each judged on all cells of one dataset before any is removed, a cell kept only if it
passes all:

- ``total_counts``: within mean ± ``n_sd`` standard deviations (sample SD) of the dataset's total counts;
- ``mito_fraction``: within mean ± ``n_sd`` SD of the fraction of counts in mitochondrially encoded genes
  (not applied, and reported so, when the dataset measures no mitochondrial gene);
- ``min_genes``: more than ``min_genes`` expressed protein-coding or miRNA genes (> 6 in the paper).

:func:`apply_qc` returns the keep mask and one report row (cells in, cells failing each rule, cells kept,
the thresholds used), which the corpus manifest and notebook 01 show.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from ..inputs.contract import counts_matrix

#: biotypes counted by the "> 6 expressed genes" rule (gc_lib.inputs.genes naming)
COUNTED_BIOTYPES: tuple[str, ...] = ("protein_coding", "miRNA")


@dataclass(frozen=True)
class QCConfig:
    n_sd: float = 3.0        # total counts and mitochondrial fraction: keep cells within mean ± n_sd SD
    min_genes: int = 6       # keep cells with more than this many expressed protein-coding/miRNA genes
    enabled: bool = True     # False: keep every cell (e.g. tokenising already curated data)


def _sd_window(values: np.ndarray, n_sd: float) -> tuple[float, float]:
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return mean - n_sd * sd, mean + n_sd * sd


def apply_qc(metrics: pd.DataFrame, config: QCConfig, *, has_mito_genes: bool) -> tuple[np.ndarray, dict]:
    """Keep mask over the rows of ``metrics`` (columns ``total_counts, mito_fraction, n_counted_genes``)
    and the dataset's QC report row."""
    n = len(metrics)
    total = metrics["total_counts"].to_numpy(float)
    mito = metrics["mito_fraction"].to_numpy(float)
    n_genes = metrics["n_counted_genes"].to_numpy()
    report: dict = {"cells_in": n}
    if not config.enabled:
        return np.ones(n, dtype=bool), report | {"qc": "disabled", "cells_kept": n}
    lo, hi = _sd_window(total, config.n_sd)
    fail_total = (total < lo) | (total > hi)
    report |= {"total_counts_low": lo, "total_counts_high": hi, "fail_total_counts": int(fail_total.sum())}
    if has_mito_genes:
        mlo, mhi = _sd_window(mito, config.n_sd)
        fail_mito = (mito < mlo) | (mito > mhi)
        report |= {"mito_fraction_low": mlo, "mito_fraction_high": mhi, "fail_mito_fraction": int(fail_mito.sum())}
    else:
        fail_mito = np.zeros(n, dtype=bool)
        report |= {"mito_fraction_low": np.nan, "mito_fraction_high": np.nan, "fail_mito_fraction": 0,
                   "mito_rule": "not applied: no mitochondrial gene measured"}
    fail_genes = n_genes <= config.min_genes
    keep = ~(fail_total | fail_mito | fail_genes)
    report |= {"fail_min_genes": int(fail_genes.sum()), "cells_kept": int(keep.sum()),
               "cells_removed": int(n - keep.sum())}
    return keep, report

#: Mitochondrially encoded genes are named "MT-…" in HGNC and "mt-…" in MGI.
MITO_PREFIX = {"human": "MT-", "mouse": "mt-"}


def mito_genes(adata: AnnData) -> np.ndarray:
    """Boolean mask over ``var``: mitochondrially encoded genes of each cell's species, by symbol."""
    symbols = adata.var["gene_symbol"].astype(str)
    prefixes = tuple(MITO_PREFIX[s] for s in adata.obs["species"].astype(str).unique())
    return symbols.str.startswith(prefixes).to_numpy()


def cell_qc_metrics(adata: AnnData) -> pd.DataFrame:
    """Per cell: ``total_counts``, ``n_genes`` (expressed), ``mito_fraction``; indexed like ``obs``.

    ``mito_fraction`` is NaN for a dataset that measures no mitochondrial gene (it cannot be judged).
    """
    counts = counts_matrix(adata)
    total = np.asarray(counts.sum(axis=1)).ravel()
    n_genes = np.asarray((counts > 0).sum(axis=1)).ravel()
    mito = mito_genes(adata)
    if mito.any():
        mito_total = np.asarray(counts[:, mito].sum(axis=1)).ravel()
        mito_fraction = np.divide(mito_total, total, out=np.zeros_like(total, dtype=float), where=total > 0)
    else:
        mito_fraction = np.full(adata.n_obs, np.nan)
    return pd.DataFrame({"total_counts": total, "n_genes": n_genes, "mito_fraction": mito_fraction},
                        index=adata.obs_names)
