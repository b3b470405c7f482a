"""The synthetic input of ``benchmarks/tokenize.py`` (and ``tokenize_profile.py``): a contract ``.h5ad`` of integer
counts written chunk by chunk, cached by shape, and Geneformer's three dictionaries for its genes.

Loaded with ``runpy.run_path`` by those scripts (``-P`` keeps the benchmarks folder off ``sys.path``); not run alone.
Cells of ``N_TYPES`` types draw reads over lognormal gene rates until they express about U(nnz) genes; 13 genes are
mitochondrial (``MT-`` symbols); ``var["ensembl_id"]`` and ``obs["n_counts"]`` are there for Geneformer.
"""
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

try:  # anndata >= 0.11
    from anndata.io import write_elem
except ImportError:  # pragma: no cover
    from anndata.experimental import write_elem

N_GENES, N_TYPES, SEED = 20_000, 8, 0
DENSE, SPARSE = (2000, 4000), (200, 600)   # expressed genes per cell: speed input, memory inputs
GEN_CHUNK = 1000                           # cells generated at a time (a bincount over GEN_CHUNK × N_GENES)
GF_OFFSET = 2                              # Geneformer's gene tokens start after <pad>, <mask>
DICT_FILES = {"gene_median_file": "gene_median_dictionary.json", "token_dictionary_file": "token_dictionary.json",
              "gene_mapping_file": "ensembl_mapping_dictionary.json"}


def gene_ids() -> list[str]:
    return [f"ENSG{i:011d}" for i in range(1, N_GENES + 1)]


def read_model(seed: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Per cell type: each gene's cumulative share of reads (lognormal gene rates × a per-type factor), and the
    curve (expected expressed genes, reads) that tells how many reads give a cell a number of expressed genes."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.0, 1.5, N_GENES)
    shares = np.array([base * rng.lognormal(0.0, 0.5, N_GENES) for _ in range(N_TYPES)])
    shares /= shares.sum(axis=1, keepdims=True)
    reads = np.geomspace(50, 1e6, 400)
    curves = [((1 - np.exp(-reads[:, None] * s[None, :])).sum(axis=1), reads) for s in shares]
    return np.cumsum(shares, axis=1), curves


def make_cells(rng, cdf, curves, n_cells: int, nnz: tuple[int, int]):
    """CSR arrays of ``n_cells`` cells, each drawing enough reads over the genes to express about U(nnz) of them."""
    cell_type, target = rng.integers(N_TYPES, size=n_cells), rng.integers(nnz[0], nnz[1] + 1, n_cells)
    keys = []
    for k in range(N_TYPES):
        cells = np.flatnonzero(cell_type == k)
        owner = np.repeat(cells, np.interp(target[cells], *curves[k]).round().astype(np.int64))
        keys.append(owner * N_GENES + np.minimum(np.searchsorted(cdf[k], rng.random(owner.size)), N_GENES - 1))
    counts = np.bincount(np.concatenate(keys), minlength=n_cells * N_GENES)
    flat = np.flatnonzero(counts)
    indptr = np.searchsorted(flat, np.arange(n_cells + 1) * N_GENES)
    return counts[flat].astype(np.float32), (flat % N_GENES).astype(np.int32), indptr.astype(np.int64)


def write_input(path: Path, n_cells: int, nnz: tuple[int, int]) -> dict:
    """Write a contract .h5ad chunk by chunk (h5py resizable CSR arrays, anndata's write_elem for obs/var) without
    ever holding the matrix; var['ensembl_id'] and obs['n_counts'] are there for Geneformer."""
    rng, (cdf, curves), ids = np.random.default_rng(SEED + 1), read_model(SEED), gene_ids()
    indptr, totals = [np.zeros(1, np.int64)], []
    with h5py.File(path, "w") as f:
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        x = f.create_group("X")
        x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (n_cells, N_GENES)})
        arrays = [x.create_dataset(n, (0,), t, maxshape=(None,), chunks=(1 << 18,))
                  for n, t in (("data", np.float32), ("indices", np.int32))]
        for start in range(0, n_cells, GEN_CHUNK):
            data, indices, ptr = make_cells(rng, cdf, curves, min(GEN_CHUNK, n_cells - start), nnz)
            offset = arrays[0].shape[0]
            for dset, values in zip(arrays, (data, indices)):
                dset.resize((offset + values.size,))
                dset[offset:] = values
            indptr.append(ptr[1:] + offset)
            totals.append(np.bincount(np.repeat(np.arange(ptr.size - 1), np.diff(ptr)), weights=data))
        x.create_dataset("indptr", data=(indptr := np.concatenate(indptr)))
        obs = pd.DataFrame({"species": pd.Categorical(["human"] * n_cells), "dataset": pd.Categorical(
            ["synthetic"] * n_cells), "n_counts": np.concatenate(totals)}, index=[f"cell{i}" for i in range(n_cells)])
        symbols = [f"MT-G{i}" if i < 13 else f"GENE{i}" for i in range(N_GENES)]  # 13 mitochondrial genes
        write_elem(f, "obs", obs)
        write_elem(f, "var", pd.DataFrame({"gene_symbol": symbols, "ensembl_id": ids}, index=ids))
        for key in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
            write_elem(f, key, {})
    per_cell = np.diff(indptr)
    return {"cells": n_cells, "nnz_range": list(nnz), "seed": SEED, "bytes": path.stat().st_size, "nnz_per_cell": {
        "min": int(per_cell.min()), "median": float(np.median(per_cell)), "max": int(per_cell.max())}}


def ensure_input(workdir: Path, n_cells: int, nnz: tuple[int, int]) -> tuple[Path, dict]:
    """The cached input of this shape: ``data/<shape>/synthetic.h5ad``, alone in its folder for Geneformer."""
    folder = workdir / "data" / f"{n_cells}-cells-{nnz[0]}-{nnz[1]}-genes-seed{SEED}"
    path, meta_path, tmp = folder / "synthetic.h5ad", folder / "meta.json", folder / ".synthetic.h5ad.tmp"
    if not (meta_path.exists() and path.exists()):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"generating {n_cells:,} cells ({nnz[0]}–{nnz[1]} genes each) → {path}", flush=True)
        meta = write_input(tmp, n_cells, nnz)
        tmp.rename(path)
        meta_path.write_text(json.dumps(meta))
    return path, json.loads(meta_path.read_text())


def write_dictionaries(folder: Path) -> dict[str, str]:
    """Geneformer's three JSON dictionaries for the synthetic genes; medians are positive lognormal values."""
    folder.mkdir(parents=True, exist_ok=True)
    ids, medians = gene_ids(), np.random.default_rng(SEED + 2).lognormal(0.5, 0.5, N_GENES)
    payloads = {"gene_median_file": dict(zip(ids, medians.tolist())),
                "token_dictionary_file": {"<pad>": 0, "<mask>": 1} | {g: i + GF_OFFSET for i, g in enumerate(ids)},
                "gene_mapping_file": {g: g for g in ids}}
    for key, payload in payloads.items():
        (folder / DICT_FILES[key]).write_text(json.dumps(payload))
    return {key: str(folder / name) for key, name in DICT_FILES.items()}
