"""Per-cell quality metrics on contract AnnData (DESIGN.md §1: total counts, mitochondrial fraction,
expressed genes). The corpus builder's ±3 SD filters are computed from these."""
from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .contract import counts_matrix

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
