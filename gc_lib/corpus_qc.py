"""The corpus builder's per-dataset cell QC (DESIGN.md §1), applied to metrics computed chunk by chunk.

Rules, each judged on all cells of one dataset before any is removed, a cell kept only if it passes all:

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

#: biotypes counted by the "> 6 expressed genes" rule (gc_lib.genes naming)
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
