"""Read single-cell atlases into the AnnData contract: ``.h5ad`` files (local or by URL, whole or in row
chunks) and the CELLxGENE Census (streamed in chunks of cells).

Every reader ends with :func:`gc_lib.inputs.conversion.to_contract` (or its chunked parts): counts found and stored
as CSR float32, Ensembl IDs as ``var_names``, symbols in ``var["gene_symbol"]``, ``obs["species"]`` and
``obs["dataset"]`` set, and the contract checked, so e.g. log-normalised values raise a clear ``ValueError``.

Downloads are streamed to a temporary file, checked against a sha256 when one is given, and renamed
into the cache only when complete (:func:`fetch_url`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from anndata import AnnData

from ..core import paths
from ..core.atomic import atomic_path
from .conversion import apply_plan, check_species, choose_counts, plan_genes, raw_var_completed, to_contract
from .fetch import FetchError, sha256_file

try:  # anndata >= 0.11
    from anndata.io import read_elem, sparse_dataset
except ImportError:  # pragma: no cover - anndata 0.10
    from anndata.experimental import read_elem, sparse_dataset

log = logging.getLogger(__name__)

CENSUS_OBS_COLUMNS: tuple[str, ...] = ("cell_type", "tissue", "assay", "dataset_id", "donor_id", "is_primary_data")
_CENSUS_ORGANISMS = {"homo_sapiens": "human", "homo sapiens": "human", "human": "human",
                     "mus_musculus": "mouse", "mus musculus": "mouse", "mouse": "mouse"}
_URL_SCHEMES = ("http", "https", "file")
_PROBE_ROWS = 10_000  # rows read to decide whether a lazily opened matrix holds counts
_BLOCK_ROWS = 50_000  # rows per block when read_h5ad(backed=True) assembles a whole file


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------

def _is_url(source) -> bool:
    return isinstance(source, str) and urllib.parse.urlsplit(source).scheme in _URL_SCHEMES


def fetch_url(url: str, *, sha256: str | None = None, cache_dir: str | os.PathLike | None = None,
              timeout: float = 60.0, chunk_bytes: int = 1 << 20) -> Path:
    """Download ``url`` (http, https or file) into ``cache_dir`` and return the cached path.

    The body is streamed in ``chunk_bytes`` blocks to a temporary file beside the destination and hashed
    on the way; only a complete download whose sha256 matches ``sha256`` (when given) is renamed to
    ``cache_dir/<basename of the URL>``. A cached file is reused without any network access when its sha256
    matches (or when no ``sha256`` is given). On any failure a :class:`FetchError` is raised and no partial
    file is left behind. ``cache_dir`` defaults to ``paths.RAW_DIR / "h5ad"``.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.RAW_DIR / "h5ad"
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "download.h5ad"
    dest = cache_dir / name
    want = sha256.lower() if sha256 else None
    if dest.is_file() and (want is None or sha256_file(dest) == want):
        return dest
    digest = hashlib.sha256()
    try:
        with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=timeout) as response, \
                open(tmp, "wb") as out:
            while block := response.read(chunk_bytes):
                digest.update(block)
                out.write(block)
            if want is not None and digest.hexdigest() != want:
                raise FetchError(f"checksum mismatch for {url}: sha256 {digest.hexdigest()}, expected {want}. "
                                 f"The download was discarded.")
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"could not download {url}: {exc}") from exc
    return dest


def resolve_h5ad(source, sha256: str | None = None, cache_dir=None) -> tuple[Path, dict[str, Any]]:
    """Local path of ``source`` (a path, or an http/https/file URL downloaded once into ``cache_dir``), checked against
    ``sha256`` when one is given, and the provenance to record in ``uns`` (the sha256 if verified)."""
    if _is_url(source):
        path = fetch_url(source, sha256=sha256, cache_dir=cache_dir)
        info: dict[str, Any] = {"source": source, "path": str(path)}
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such .h5ad file: {path}")
        info = {"source": str(path)}
        if sha256 is not None and (actual := sha256_file(path)) != sha256.lower():
            raise FetchError(f"{path}: sha256 {actual}, expected {sha256.lower()}")
    return path, info | ({"sha256": sha256.lower()} if sha256 else {})


# --------------------------------------------------------------------------------------------
# .h5ad files
# --------------------------------------------------------------------------------------------

def _lazy(node):
    """Row-sliceable view of a stored matrix: a backed sparse dataset or an h5py dataset."""
    return sparse_dataset(node) if isinstance(node, h5py.Group) else node


def _lazy_candidates(f: h5py.File) -> tuple[list, pd.DataFrame]:
    var = read_elem(f["var"])
    cands = [("X", _lazy(f["X"]), var)] if "X" in f else []
    cands += [(f"layers[{k!r}]", _lazy(f["layers"][k]), var) for k in f.get("layers", {})]
    if "raw" in f and "X" in f["raw"]:
        cands.append(("raw.X", _lazy(f["raw"]["X"]), raw_var_completed(read_elem(f["raw"]["var"]), var)))
    return cands, read_elem(f["obs"])


def concat_chunks(chunks: list[AnnData]) -> AnnData:
    """One AnnData from contract chunks of the same source: provenance of the first, dropped cells summed."""
    adata = ad.concat(chunks, merge="same") if len(chunks) > 1 else chunks[0]
    uns = {k: v for k, v in chunks[0].uns["gc_lib"].items() if k != "rows"}
    uns["dropped_cells"] = sum(c.uns["gc_lib"]["dropped_cells"] for c in chunks)
    adata.uns["gc_lib"] = uns
    return adata


def _iter_lazy(path: Path, info: dict[str, Any], *, species, chunk_size, counts_layer, symbol_column,
               gene_id_column, dataset) -> Iterator[AnnData]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    with h5py.File(path, "r") as f:
        cands, obs = _lazy_candidates(f)
        label, matrix, var = choose_counts(cands, counts_layer, lambda m: m[0:min(m.shape[0], _PROBE_ROWS)])
        plan = plan_genes(var, species, gene_id_column, symbol_column)
        for start in range(0, matrix.shape[0], chunk_size):
            stop = min(start + chunk_size, matrix.shape[0])
            chunk = apply_plan(plan, matrix[start:stop], obs.iloc[start:stop], species=species, dataset=dataset,
                           info={**info, "counts_source": label, "rows": [start, stop]})
            if chunk is None:
                log.warning("%s: rows %d-%d hold only empty cells; skipped", path, start, stop)
                continue
            yield chunk


def read_h5ad(source: str | os.PathLike, *, species: str, sha256: str | None = None,
              cache_dir: str | os.PathLike | None = None, backed: bool = False, counts_layer: str | None = None,
              symbol_column: str | None = None, gene_id_column: str | None = None,
              dataset: str | None = None) -> AnnData:
    """Read a ``.h5ad`` (local path or http/https/file URL) into the AnnData contract.

    ``species`` is "human" or "mouse". URLs are downloaded once into ``cache_dir`` (:func:`fetch_url`);
    ``sha256`` is verified for URLs and local files alike (mismatch: :class:`FetchError`). ``counts_layer``
    names where the counts are ("X", "raw.X" or a layer name; default: found automatically),
    ``gene_id_column`` / ``symbol_column`` the var columns of Ensembl IDs / symbols (default: detected).
    ``dataset`` fills ``obs["dataset"]`` (default: the file name without ``.h5ad``).

    ``backed=False`` loads the whole file with :func:`anndata.read_h5ad`. ``backed=True`` opens it lazily and
    reads only obs, var and the chosen count matrix, in row blocks: peak memory is then about twice the
    float32 result, however many other layers, embeddings or graphs the file holds. Both give the same result
    (``backed=True`` decides where the counts are from the first 10 000 rows, as :func:`iter_h5ad_chunks`).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` when the data cannot meet the contract.
    """
    check_species(species)
    path, info = resolve_h5ad(source, sha256, cache_dir)
    dataset = dataset if dataset is not None else path.name.removesuffix(".h5ad")
    if backed:
        chunks = list(_iter_lazy(path, info, species=species, chunk_size=_BLOCK_ROWS, counts_layer=counts_layer,
                                 symbol_column=symbol_column, gene_id_column=gene_id_column, dataset=dataset))
        if not chunks:
            raise ValueError(f"{path}: every cell is empty (zero total counts)")
        return concat_chunks(chunks)
    adata = to_contract(ad.read_h5ad(path), species=species, dataset=dataset, counts_layer=counts_layer,
                        gene_id_column=gene_id_column, symbol_column=symbol_column, source=info["source"])
    adata.uns["gc_lib"] = {**info, **adata.uns["gc_lib"]}
    return adata


def iter_h5ad_chunks(path: str | os.PathLike, *, species: str, chunk_size: int = 10_000,
                     sha256: str | None = None, cache_dir: str | os.PathLike | None = None,
                     counts_layer: str | None = None, symbol_column: str | None = None,
                     gene_id_column: str | None = None, dataset: str | None = None) -> Iterator[AnnData]:
    """Yield a large ``.h5ad`` as contract AnnData chunks of at most ``chunk_size`` cells, in file order.

    Options are those of :func:`read_h5ad`. The file is opened read-only with h5py and the count matrix
    through anndata's backed sparse dataset (the machinery of ``backed="r"``, without its eager loading of
    layers, obsm and obsp); each chunk is a row slice materialised on its own. Peak memory: the obs and var
    tables (loaded whole, as in backed mode) plus about three copies of one chunk (as stored, as CSR float32,
    and converted): for sparse data ~12 bytes × the chunk's non-zeros each, for densely stored X
    ``chunk_size × n_genes × 4`` bytes, so lower ``chunk_size`` for dense files. Whether the counts are in X,
    a layer or ``.raw`` is decided once, from the first ``10 000`` rows. Cells with zero counts are
    dropped (``uns["gc_lib"]["dropped_cells"]``; a chunk of only such cells is skipped); ``uns["gc_lib"]
    ["rows"]`` gives each chunk's ``[start, stop)`` rows in the file. Concatenated, the chunks equal
    :func:`read_h5ad` of the same file.
    """
    check_species(species)
    path, info = resolve_h5ad(path, sha256, cache_dir)
    dataset = dataset if dataset is not None else path.name.removesuffix(".h5ad")
    yield from _iter_lazy(path, info, species=species, chunk_size=chunk_size, counts_layer=counts_layer,
                          symbol_column=symbol_column, gene_id_column=gene_id_column, dataset=dataset)


# --------------------------------------------------------------------------------------------
# CELLxGENE Census
# --------------------------------------------------------------------------------------------

def open_census(census_version: str | None = "stable", uri: str | None = None, **kwargs):
    """Open the CELLxGENE Census (``cellxgene_census.open_soma``), by version or by ``uri`` (also a local path).

    ``cellxgene_census`` is an optional dependency, imported only here. Use the result as a context manager
    (``with open_census() as census: …``) so it is closed. Opening by version needs the network.
    """
    try:
        import cellxgene_census
    except ImportError as exc:
        raise ImportError("reading the CELLxGENE Census needs the optional dependency cellxgene-census: "
                          "pip install 'gc_lib[census]'") from exc
    return cellxgene_census.open_soma(census_version=census_version, uri=uri, **kwargs)


def census_organism(organism: str) -> tuple[str, str]:
    """The Census experiment name and our species name of ``organism`` ("homo_sapiens", "Mus musculus", "human",
    "mouse" …); ``ValueError`` for any other."""
    species = _CENSUS_ORGANISMS.get(organism.strip().lower())
    if species is None:
        raise ValueError(f"unknown organism {organism!r}; use 'homo_sapiens' or 'mus_musculus' (or human/mouse)")
    return ("homo_sapiens" if species == "human" else "mus_musculus"), species


def census_query(census, organism: str, *, obs_value_filter: str | None = None,
                 var_value_filter: str | None = None, chunk_size: int = 10_000,
                 obs_columns: Sequence[str] = CENSUS_OBS_COLUMNS, primary_only: bool = True,
                 max_cells: int | None = None, seed: int = 0) -> Iterator[AnnData]:
    """Stream the cells of an open Census (:func:`open_census`) matching the filters as contract AnnData chunks.

    ``organism``: "homo_sapiens"/"mus_musculus" (or "Homo sapiens", "human", "mouse"). ``obs_value_filter`` and
    ``var_value_filter`` are SOMA value filters (e.g. ``"tissue_general == 'blood'"``,
    ``"feature_id in ['ENSG00000141510']"``). ``primary_only`` (default) adds ``is_primary_data == True``:
    the Census holds a cell once per dataset it was submitted in, so without it cells published in several
    datasets would be counted several times.

    The matching obs and var joinids are queried first; then each chunk of ``chunk_size`` cells is read by
    coordinates (``X["raw"]``, the raw counts), so memory holds one chunk plus the joinid arrays (8 bytes
    per matching cell). Each chunk has ``var_names`` = ``feature_id``, ``var["gene_symbol"]`` = ``feature_name``,
    ``obs_names`` = the Census ``soma_joinid``, the ``obs_columns`` (plus ``obs["dataset"]`` = ``dataset_id``
    and ``obs["species"]``). Cells left without counts by a gene filter are dropped. ``max_cells`` keeps a
    uniform random sample (``seed``) of that many matching cells, spread over every dataset that matches.
    """
    import tiledbsoma

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    name, species = census_organism(organism)
    experiment = census["census_data"][name]
    columns = list(dict.fromkeys(["soma_joinid", *obs_columns, "dataset_id"]))
    missing = [c for c in columns if c not in experiment.obs.keys()]
    if missing:
        raise ValueError(f"obs columns {missing} are not in the Census obs; it has {list(experiment.obs.keys())}")
    filters = [f for f in ("is_primary_data == True" if primary_only else None, obs_value_filter) if f]
    value_filter = " and ".join(f"({f})" for f in filters) or None
    var_query = tiledbsoma.AxisQuery(value_filter=var_value_filter) if var_value_filter else tiledbsoma.AxisQuery()
    with experiment.axis_query("RNA", obs_query=tiledbsoma.AxisQuery(value_filter=value_filter),
                               var_query=var_query) as query:
        obs_ids = np.sort(query.obs_joinids().to_numpy())
        var_ids = query.var_joinids().to_numpy()
    if var_value_filter:
        var_query = tiledbsoma.AxisQuery(coords=(var_ids,))
    n_matching = len(obs_ids)
    if max_cells is not None and n_matching > max_cells:
        obs_ids = np.sort(np.random.default_rng(seed).choice(obs_ids, size=max_cells, replace=False))
    info = {"source": f"census:{name}", "counts_source": "X['raw']", "obs_value_filter": value_filter or "",
            "var_value_filter": var_value_filter or "", "n_matching_cells": int(n_matching)}
    for start in range(0, len(obs_ids), chunk_size):
        coords = obs_ids[start:start + chunk_size]
        with experiment.axis_query("RNA", obs_query=tiledbsoma.AxisQuery(coords=(coords,)),
                                   var_query=var_query) as query, warnings.catch_warnings():
            warnings.simplefilter("ignore", ad.ImplicitModificationWarning)  # its integer obs/var index
            chunk = query.to_anndata(X_name="raw", column_names={"obs": columns,
                                                                 "var": ["feature_id", "feature_name"]})
        obs = chunk.obs.set_index(chunk.obs["soma_joinid"].astype(str).rename(None))
        obs["dataset"] = obs["dataset_id"].astype("category")
        plan = plan_genes(chunk.var, species, "feature_id", "feature_name")
        adata = apply_plan(plan, chunk.X, obs, species=species, dataset=None,
                       info={**info, "rows": [start, start + len(coords)]})
        if adata is not None:
            yield adata


def sample_census(census, organism: str, *, max_cells: int, seed: int = 0, **query) -> AnnData:
    """A random sample of ``max_cells`` matching Census cells as one contract AnnData.

    ``query`` takes :func:`census_query`'s filters (``obs_value_filter``, ``var_value_filter`` …). Raises
    ``ValueError`` when no cell matches.
    """
    chunks = list(census_query(census, organism, max_cells=max_cells, seed=seed, **query))
    if not chunks:
        raise ValueError(f"no {organism} cell of the Census matches {query or 'the default filter'}")
    return concat_chunks(chunks)
