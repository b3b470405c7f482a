"""Row-chunk access to the counts of a contract ``.h5ad`` file or ``.zarr`` store, without loading it.

The corpus builder reads each input several times in chunks of cells, from several processes. Opening
through ``anndata``'s backed mode would load obs/var eagerly and go through its generic slicing; here only
the CSR arrays of the count matrix are sliced (``indptr`` for the chunk, then its ``data``/``indices``),
so a chunk costs one contiguous read per array and memory holds one chunk at a time. Dense stored
matrices are read by row blocks and made sparse; CSC matrices cannot be read by rows efficiently and are
refused with the fix.

The counts are taken from ``layers["counts"]`` when present, else ``X`` (the AnnData contract, DESIGN.md §4).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..inputs.contract import SPECIES, check_gene_ids, is_species_gene_id
from ._buffers import reusable
from ._direct_read import direct_reader

try:  # anndata >= 0.11
    from anndata.io import read_elem
except ImportError:  # pragma: no cover - anndata 0.10
    from anndata.experimental import read_elem


@contextmanager
def open_store(path: str | os.PathLike) -> Iterator:
    """Open a ``.h5ad`` (h5py) or ``.zarr`` (zarr) AnnData store read-only."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        import zarr
        yield zarr.open_group(str(path), mode="r")
        return
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is an empty file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable .h5ad (HDF5) file: {err}") from err
    with handle:
        yield handle


def _counts_node(store, path: Path):
    if "layers" in store and "counts" in store["layers"]:
        return store["layers"]["counts"], "layers['counts']"
    if "X" in store:
        return store["X"], "X"
    raise ValueError(f"{path} has neither X nor layers['counts']: not an AnnData file with counts")


@dataclass(frozen=True)
class StoreInfo:
    """What the builder needs to know about one input before reading its counts."""
    path: Path
    dataset: str            # obs["dataset"] if it holds one value, else the file name
    species: str            # obs["species"]; one species per input
    gene_ids: np.ndarray    # var_names (Ensembl IDs)
    symbols: np.ndarray     # var["gene_symbol"] (empty strings where absent)
    n_cells: int
    counts_location: str    # "X" or "layers['counts']"


def _obs_values(store, name: str) -> np.ndarray | None:
    """The distinct values of ``obs[name]`` as strings (None if there is no such column): a hash of the column, or of
    a categorical's codes, not a sort of one string per cell."""
    if "obs" not in store or name not in store["obs"]:
        return None
    return np.asarray(pd.unique(pd.Series(read_elem(store["obs"][name]))).astype(str))


def _gene_columns(var) -> tuple[np.ndarray, np.ndarray]:
    """``var_names`` and ``var["gene_symbol"]`` as strings (empty strings where there is no such column), reading
    only those two of var's columns where it is stored as anndata's dataframe encoding (other columns can be many
    and large: the benchmark input's var holds a third string column, as long as the others, that nothing uses)."""
    index = var.attrs.get("_index")
    index = index.decode() if isinstance(index, bytes) else index
    if var.attrs.get("encoding-type") not in ("dataframe", b"dataframe") or index not in var:
        frame = read_elem(var)
        symbols = frame["gene_symbol"] if "gene_symbol" in frame else None
        gene_ids = frame.index
    else:
        gene_ids = pd.Index(read_elem(var[index]))
        symbols = pd.Series(read_elem(var["gene_symbol"])) if "gene_symbol" in var else None
    gene_ids = np.asarray(gene_ids.astype(str))
    return gene_ids, (np.full(len(gene_ids), "") if symbols is None else symbols.astype(str).to_numpy())


def describe_store(path: str | os.PathLike) -> StoreInfo:
    """Read and check the metadata of one input; a ``ValueError`` names anything against the contract."""
    path = Path(path)
    with open_store(path) as store:
        node, location = _counts_node(store, path)
        shape = tuple(node.attrs["shape"]) if "indptr" in node else tuple(node.shape)
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"{path}: no cells or no genes ({shape[0]} × {shape[1]})")
        gene_ids, symbols = _gene_columns(store["var"])
        species = _obs_values(store, "species")
        datasets = _obs_values(store, "dataset")
    if species is None:
        raise ValueError(f"{path}: obs['species'] is missing; set it to one of {SPECIES}")
    if len(species) != 1 or species[0] not in SPECIES:
        raise ValueError(f"{path}: obs['species'] must hold one of {SPECIES} for every cell, found {list(species)}")
    try:
        check_gene_ids(gene_ids)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    wrong = ~is_species_gene_id(gene_ids, str(species[0]))
    if wrong.any():
        raise ValueError(f"{path}: cells are {species[0]} but {wrong.sum()} genes are not {species[0]} Ensembl IDs "
                         f"(e.g. {list(gene_ids[wrong][:3])})")
    dataset = datasets[0] if datasets is not None and len(datasets) == 1 else \
        path.name.removesuffix(".h5ad").removesuffix(".zarr")
    return StoreInfo(path, dataset, str(species[0]), gene_ids, symbols, shape[0], location)


@contextmanager
def row_reader(path: str | os.PathLike) -> Iterator[Callable[..., sp.csr_matrix]]:
    """Open the store once and yield ``read(start, stop, buffers=None)``: rows ``[start, stop)`` of the counts as CSR
    (float32 data, int32 indices, int64 indptr; with ``buffers``, a dict of :func:`gc_lib.corpus._buffers.reusable`
    arrays, ``data`` and ``indices`` may be views of its arrays, valid until they are reused). A task reads its pieces
    through one opening (opening per piece cost 1–3 µs per cell, up to a third of the read). ``read`` may be called
    from several threads: ``data`` and ``indices`` of an ``.h5ad`` are read straight from the file where their layout
    allows (:mod:`gc_lib.corpus._direct_read`), without the GIL; h5py serialises its own reads; zarr reads are
    independent."""
    path = Path(path)
    with open_store(path) as store:
        node, location = _counts_node(store, path)
        if "indptr" not in node:  # dense matrix
            yield lambda start, stop, buffers=None: sp.csr_matrix(np.asarray(node[start:stop], dtype=np.float32))
            return
        encoding = node.attrs.get("encoding-type", "csr_matrix")
        if isinstance(encoding, bytes):
            encoding = encoding.decode()
        if encoding != "csr_matrix":
            raise ValueError(f"{path}: {location} is stored as {encoding}, which cannot be read by rows; "
                             f"rewrite it as CSR (adata.X = adata.X.tocsr(); adata.write_h5ad(...))")
        n_genes = int(tuple(node.attrs["shape"])[1])
        indptr_node = node["indptr"]
        with _descriptor(path) as fd:
            read_data = range_reader(node["data"], fd, "data", np.float32)
            read_indices = range_reader(node["indices"], fd, "indices", np.int32)

            def read(start: int, stop: int, buffers: dict | None = None) -> sp.csr_matrix:
                indptr = np.asarray(indptr_node[start:stop + 1], dtype=np.int64)
                lo, hi = int(indptr[0]), int(indptr[-1])
                data, indices = read_data(lo, hi, buffers), read_indices(lo, hi, buffers)
                return sp.csr_matrix((data, indices, indptr - lo), shape=(stop - start, n_genes))

            yield read


@contextmanager
def _descriptor(path: Path) -> Iterator[int | None]:
    """An OS file descriptor of an ``.h5ad`` for direct reads (``None`` for a ``.zarr`` directory)."""
    if path.is_dir():
        yield None
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def range_reader(dataset, fd: int | None, name: str, dtype) -> Callable[[int, int, dict | None], np.ndarray]:
    """``read(lo, hi, buffers)`` → ``dataset[lo:hi]`` as ``dtype``: straight from the file where its bytes allow
    (:mod:`._direct_read`; into ``buffers[name]``, reused, when the stored type is ``dtype``), else through h5py /
    zarr. ``fd``: the file's descriptor (``None``: no direct reads). The one way the corpus stage and its benchmarks
    read an array's elements."""
    direct = direct_reader(dataset, fd) if fd is not None else None
    if direct is not None and dataset.dtype == dtype:
        return lambda lo, hi, buffers: direct(lo, hi, reusable(buffers, name, hi - lo, dtype))
    source = direct or (lambda lo, hi: dataset[lo:hi])
    return lambda lo, hi, buffers: np.asarray(source(lo, hi), dtype=dtype)

