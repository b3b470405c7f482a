"""Synthetic count matrices shared by unit tests (imported by conftest.py and test modules)."""
import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

HUMAN = [f"ENSG{i:011d}" for i in range(1, 41)]
MOUSE = [f"ENSMUSG{i:011d}" for i in range(1, 31)]


def count_cells(n: int, genes: list[str], species: str, seed: int, rates: np.ndarray | None = None) -> ad.AnnData:
    """Poisson counts of ``n`` cells (gene ``rates``, else random gamma rates); every cell expresses the first
    gene; ``obs["species"]`` set, obs names unique per (species, seed)."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.8, 2.0, len(genes)) if rates is None else rates
    counts = rng.poisson(rates, size=(n, len(genes))).astype(np.float32)
    counts[:, 0] += 1
    obs = pd.DataFrame({"species": species}, index=[f"{species}{seed}_{i}" for i in range(n)])
    var = pd.DataFrame({"gene_symbol": [f"s{i}" for i in range(len(genes))]}, index=genes)
    return ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var)


def two_programmes(n: int, genes: list[str], species: str, seed: int) -> ad.AnnData:
    """Half the cells express genes 1–10 highly ("A"), half genes 11–20 ("B"); both share a weak background."""
    rates = {label: np.full(len(genes), 0.3) for label in "AB"}
    rates["A"][1:11], rates["B"][11:21] = 8.0, 8.0
    parts = [count_cells(n // 2, genes, species, seed + i, rates[label]) for i, label in enumerate("AB")]
    for part, label in zip(parts, "AB"):
        part.obs["label"] = label
    return ad.concat(parts, merge="same")
