"""Synthetic count matrices and an L1000-like dose plate shared by unit tests (imported by conftest.py and test
modules)."""
import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

HUMAN = [f"ENSG{i:011d}" for i in range(1, 41)]
MOUSE = [f"ENSMUSG{i:011d}" for i in range(1, 31)]
#: The doses (µM) of the L1000 plate, and the genes of the synthetic dose plate.
DOSES = [0.04, 0.12, 0.37, 1.11, 3.33, 10.0]
N_GENES = 60


def random_csr_structure(rng, n_rows: int, n_cols: int, max_nnz: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, indptr)`` of a random CSR chunk: each row stores 0 … ``max_nnz`` distinct columns, in random order
    (the kernels must not rely on sorted columns); int32 indices, int64 indptr."""
    nnz = rng.integers(0, max_nnz + 1, n_rows)
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(nnz, out=indptr[1:])
    indices = np.concatenate([rng.choice(n_cols, k, replace=False) for k in nnz] + [[]]).astype(np.int32)
    return indices, indptr


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


def synthetic_plate(seed: int = 0, reps: int = 4, noise: float = 0.3):
    """4 drugs × 6 doses × ``reps`` wells + 12 DMSO wells, log2-like values around 8. Drug i shifts genes
    8i … 8i+7 by ±2 × sigmoid(2.5 (log10 dose − midpoint_i)). Returns the plate and the sign of each drug's shift."""
    rng = np.random.default_rng(seed)
    base = rng.normal(8, 1, N_GENES)
    rows, obs, signs = [], [], np.zeros((4, N_GENES))
    for i, midpoint in enumerate([-0.5, 0.0, 0.3, -0.2]):
        signs[i, i * 8:i * 8 + 8] = np.where(np.arange(8) % 2, -1.0, 1.0)
        for dose in DOSES:
            effect = 2.0 / (1 + np.exp(-2.5 * (np.log10(dose) - midpoint)))
            for _ in range(reps):
                rows.append(base + rng.normal(0, noise, N_GENES) + signs[i] * effect)
                obs.append((f"drug{i}", dose))
    for _ in range(12):
        rows.append(base + rng.normal(0, noise, N_GENES))
        obs.append(("DMSO", np.nan))
    obs = pd.DataFrame(obs, columns=["pert_iname", "pert_dose"], index=[f"w{i}" for i in range(len(obs))])
    return ad.AnnData(np.asarray(rows, dtype=np.float32), obs=obs), signs


def held_out_dose(adata: ad.AnnData, dose: float):
    """The synthetic plate without ``dose``, the held-out truth (each drug's mean at that dose) and the DMSO mean."""
    held = (adata.obs["pert_dose"] == dose).to_numpy()
    names = adata.obs["pert_iname"].to_numpy()
    truth = np.array([adata.X[held & (names == f"drug{i}")].mean(0) for i in range(4)])
    return adata[~held].copy(), truth, adata.X[names == "DMSO"].mean(0)


def write_census(root: str, counts: np.ndarray, obs: pd.DataFrame, var: pd.DataFrame) -> str:
    """A tiny on-disk SOMA collection with the CELLxGENE Census layout at ``root``: ``census_info``, and
    ``census_data/homo_sapiens`` (measurement RNA, X layer ``raw``) holding ``counts`` with ``obs`` and ``var``."""
    import tiledbsoma
    import tiledbsoma.io

    with tiledbsoma.Collection.create(root) as census:
        census.add_new_collection("census_info")
        data = census.add_new_collection("census_data")
        uri = tiledbsoma.io.from_anndata(f"{root}/census_data/homo_sapiens",
                                         ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var),
                                         measurement_name="RNA", X_layer_name="raw")
        with tiledbsoma.Experiment.open(uri) as experiment:
            data.set("homo_sapiens", experiment, use_relative_uri=True)
    return root
