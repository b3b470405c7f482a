"""The offline bundle's single-cell datasets, loaded into the AnnData contract (DESIGN.md §3–4).

``load_dataset(name)`` fetches the files (:func:`gc_lib.inputs.sources.fetch`), reads them, rebuilds counts where
a package ships only normalised values (PBMC 68k) and ends in :func:`gc_lib.inputs.conversion.to_contract`, which
maps gene symbols to Ensembl IDs where a file ships no IDs. What each step did is recorded in ``uns["gc_lib"]``
(the symbol mapping's counts per tier in ``uns["gc_lib"]["symbol_mapping"]``, empty for files with IDs).

The Baron et al. 2016 pancreas pair (``baron_human``, ``baron_mouse``: the same tissue and protocol in both
species) carries Cell Ontology labels and donors, kept in ``obs`` as ``cell_type`` (the ontology class name),
``cell_type_ontology_id``, ``cell_type_short`` (the authors' short name, e.g. ``beta``) and ``donor``. Its files
were written from R, whose ``make.names`` turned every ``-`` of a gene symbol into ``.`` (``HLA-DRA`` →
``HLA.DRA``); :func:`restore_r_symbols` undoes that before the symbols are mapped, and counts what it changed.

Data that are not counts (the monocle lung FPKM table) are loaded by :func:`load_fpkm_lung`, flagged in
``uns["gc_lib"]["value_kind"]`` and kept out of :data:`BUNDLE`: they never enter the corpus as counts.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .conversion import to_contract
from .genes import map_symbols_to_ensembl
from .sources import SOURCES, fetch

#: Largest distance from an integer tolerated when counts are rebuilt from normalised values. The PBMC 68k
#: rebuild peaks at 0.08 (n_counts is a little off the true normalisation total); 0.25 keeps rounding unambiguous.
MAX_REBUILD_DEVIATION = 0.25


@dataclass(frozen=True)
class BundleDataset:
    """One dataset of the offline bundle."""

    name: str                    # key for load_dataset
    species: str                 # "human" or "mouse"
    sources: tuple[str, ...]     # registry entries it is read from (gc_lib.inputs.sources.SOURCES)
    read: Callable[[], AnnData]  # reads the source files; counts + symbols/IDs, not yet in the contract
    gene_id_column: str | None = None  # var column with Ensembl IDs in the source (None: map symbols)
    note: str = ""               # what to know about it, in one line


@contextmanager
def _old_format_warnings_silenced() -> Iterator[None]:
    """The packaged files predate anndata 0.8; reading them warns about their layout, which is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="anndata")
        warnings.filterwarnings("ignore", message=".*(old format|names are not unique|Transforming to str).*")
        warnings.filterwarnings("ignore", category=ad.OldFormatWarning)
        yield


def rebuild_counts_from_lognorm(lognorm, total_counts, *, scale: float = 1e4) -> tuple[sp.csr_matrix, float]:
    """Counts from ``log1p(counts / total * scale)`` and each cell's total: ``round(expm1(x) * total / scale)``.

    Returns the CSR counts and the largest distance from an integer before rounding; raises ``ValueError``
    when that exceeds :data:`MAX_REBUILD_DEVIATION` (the input was not log1p(CP10k) of integers).
    """
    matrix = sp.csr_matrix(lognorm, dtype=np.float64, copy=True)
    total = np.asarray(total_counts, dtype=np.float64)
    if total.shape != (matrix.shape[0],):
        raise ValueError(f"need one total per cell: {total.shape} totals for {matrix.shape[0]} cells")
    per_entry_total = np.repeat(total, np.diff(matrix.indptr))
    values = np.expm1(matrix.data) * per_entry_total / scale
    deviation = float(np.abs(values - np.rint(values)).max()) if values.size else 0.0
    if deviation > MAX_REBUILD_DEVIATION:
        raise ValueError(f"values are not log1p(CP{scale:g}) of integer counts: rebuilt counts are up to "
                         f"{deviation:.3f} away from an integer")
    matrix.data = np.rint(values)
    matrix.eliminate_zeros()
    return matrix.astype(np.float32), deviation


def _read_pbmc68k() -> AnnData:
    src = ad.read_h5ad(fetch("pbmc68k_reduced"))
    counts, deviation = rebuild_counts_from_lognorm(src.raw.X, src.obs["n_counts"].to_numpy())
    adata = AnnData(counts, obs=src.obs[["bulk_labels"]].rename(columns={"bulk_labels": "cell_type"}),
                    var=pd.DataFrame(index=src.raw.var_names.astype(str)))
    adata.uns["rebuild_max_deviation"] = deviation
    return adata


def _read_celltypist() -> AnnData:
    # A wide CSV (559 rows × 32,787 columns): one numpy parse per row is ~2.5× faster than a columnar
    # reader, which pays per column. The file has no quoting (checked), so a plain split is exact.
    path = fetch("celltypist_sample")
    with open(path) as handle:
        header = handle.readline().rstrip("\n")
        if '"' in header:
            raise ValueError(f"{path}: unexpected quoted header; the registry file is unquoted")
        genes = header.split(",")[1:]
        cells, rows = [], []
        for line in handle:
            cell, _, values = line.rstrip("\n").partition(",")
            cells.append(cell)
            rows.append(np.array(values.split(","), dtype=np.float64))
    values = np.vstack(rows)
    # Some columns are written as 0.999999999999999-style floats; they are counts within 1e-9.
    deviation = float(np.abs(values - np.rint(values)).max())
    if deviation > 1e-6:
        raise ValueError(f"celltypist sample is not integer counts (max deviation {deviation})")
    return AnnData(sp.csr_matrix(np.rint(values).astype(np.float32)), obs=pd.DataFrame(index=cells),
                   var=pd.DataFrame(index=pd.Index(genes)))


def _read_h5ad_counts(source: str) -> Callable[[], AnnData]:
    def read() -> AnnData:
        src = ad.read_h5ad(fetch(source))
        return AnnData(sp.csr_matrix(src.X, dtype=np.float32), obs=pd.DataFrame(index=src.obs_names),
                       var=src.var[[c for c in ("gene_ids",) if c in src.var]])
    return read


#: Baron obs columns as shipped (CAME's files) → their names here; kept as categoricals.
BARON_OBS_COLUMNS = {"cell_ontology_class": "cell_type", "cell_ontology_id": "cell_type_ontology_id",
                     "cell_type1": "cell_type_short", "donor": "donor"}


def require_integer_counts(matrix, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless the stored values of ``matrix`` are non-negative integers."""
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if not values.size:
        return
    fractional = values[values != np.rint(values)]
    if fractional.size or values.min() < 0:
        example = fractional[:3].tolist() if fractional.size else [float(values.min())]
        raise ValueError(f"{what} is not raw UMI counts: {fractional.size} non-integer values, min "
                         f"{float(values.min()):g} (e.g. {example}); the loader reads counts only")


def restore_r_symbols(symbols, species: str) -> tuple[pd.Index, int]:
    """Gene symbols with the ``-`` that R's ``make.names`` replaced by ``.`` put back, and how many were changed.

    A symbol with a ``.`` becomes its hyphenated form only when that form is a known ``species`` symbol (HGNC/MGI:
    approved, previous or alias) and not already among ``symbols``; others (e.g. MGI's own ``Tex19.1``) are kept.
    """
    symbols = pd.Index(np.asarray(symbols, dtype=str))
    dotted = np.flatnonzero(symbols.str.contains(".", regex=False))
    hyphenated = symbols[dotted].str.replace(".", "-", regex=False)
    ids, _ = map_symbols_to_ensembl(hyphenated.to_numpy(), species)
    change = ids.notna().to_numpy() & ~hyphenated.isin(symbols)
    restored = symbols.to_numpy(dtype=object).copy()
    restored[dotted[change]] = hyphenated[change]
    return pd.Index(restored), int(change.sum())


def read_baron(path, species: str) -> AnnData:
    """A Baron pancreas ``.h5ad`` as CAME ships it → counts (CSR float32), symbols as var_names, labels in obs.

    Symbols are passed through :func:`restore_r_symbols` (the number changed goes to ``uns["symbols_restored"]``).
    Raises ``ValueError`` when ``X`` is not integer counts or a label column of :data:`BARON_OBS_COLUMNS` is missing.
    """
    src = ad.read_h5ad(path)
    missing = [c for c in BARON_OBS_COLUMNS if c not in src.obs]
    if missing:
        raise ValueError(f"{path}: obs lacks {missing}; a Baron file has {list(BARON_OBS_COLUMNS)}")
    counts = sp.csr_matrix(src.X, dtype=np.float32)
    require_integer_counts(counts, f"{path} (X)")
    obs = pd.DataFrame({new: pd.Categorical(src.obs[old].astype(str)) for old, new in BARON_OBS_COLUMNS.items()},
                       index=src.obs_names.astype(str))
    symbols, n_restored = restore_r_symbols(src.var_names, species)
    return AnnData(counts, obs=obs, var=pd.DataFrame(index=symbols), uns={"symbols_restored": n_restored})


def _read_mouse_10k() -> AnnData:
    src = ad.read_zarr(fetch("mouse_10k_subset"))
    return AnnData(sp.csr_matrix(np.asarray(src.X), dtype=np.float32), obs=pd.DataFrame(index=src.obs_names),
                   var=pd.DataFrame({"gene_ids": src.var["gene_ids"].astype(str).to_numpy()},
                                    index=src.var_names.astype(str)))


#: What a reader may record in ``uns`` that load_dataset carries into ``uns["gc_lib"]``.
_READER_RECORDS = ("rebuild_max_deviation", "symbols_restored")

BUNDLE: dict[str, BundleDataset] = {d.name: d for d in [
    BundleDataset("pbmc68k_reduced", "human", ("pbmc68k_reduced",), _read_pbmc68k,
                  note="counts rebuilt from .raw (log1p CP10k of 765 kept genes) × n_counts"),
    BundleDataset("celltypist_sample", "human", ("celltypist_sample",), _read_celltypist,
                  note="hg19-era 10x symbols"),
    BundleDataset("scvi_pbmc5k", "human", ("scvi_pbmc5k",), _read_h5ad_counts("scvi_pbmc5k"),
                  note="CITE-seq RNA part; proteins not loaded"),
    BundleDataset("scvi_pbmc10k", "human", ("scvi_pbmc10k",), _read_h5ad_counts("scvi_pbmc10k"),
                  note="CITE-seq RNA part; proteins not loaded"),
    BundleDataset("mouse_10k_subset", "mouse", ("mouse_10k_subset",), _read_mouse_10k,
                  gene_id_column="gene_ids", note="first 1,000 genes of the mm10 list; Ensembl IDs shipped"),
    BundleDataset("scvelo_pancreas", "mouse", ("scvelo_pancreas",), _read_h5ad_counts("scvelo_pancreas"),
                  note="X = spliced counts"),
    BundleDataset("scvelo_dentategyrus", "mouse", ("scvelo_dentategyrus",),
                  _read_h5ad_counts("scvelo_dentategyrus"), note="X = spliced counts"),
    BundleDataset("baron_human", "human", ("baron_human",), lambda: read_baron(fetch("baron_human"), "human"),
                  note="pancreas, inDrop, 4 donors; Cell Ontology labels; symbols mapped to Ensembl"),
    BundleDataset("baron_mouse", "mouse", ("baron_mouse",), lambda: read_baron(fetch("baron_mouse"), "mouse"),
                  note="pancreas, inDrop, 2 donors; Cell Ontology labels; symbols mapped to Ensembl"),
]}


def load_dataset(name: str, *, max_cells: int | None = None, seed: int = 0) -> AnnData:
    """Load bundle dataset ``name`` in the AnnData contract (fetching its files on first use).

    ``max_cells`` keeps a random subset of that many cells (``seed`` fixes it), for small profiles (label
    categories no kept cell carries are dropped).
    Sets: ``X`` (CSR float32 counts), ``var["gene_symbol"]``, ``obs["species"]``, ``obs["dataset"]``,
    ``obs["cell_type"]`` where the source has labels (and for Baron ``cell_type_ontology_id``,
    ``cell_type_short``, ``donor``), ``uns["gc_lib"]`` (provenance, gene mapping counts).
    """
    try:
        spec = BUNDLE[name]
    except KeyError:
        raise KeyError(f"no bundle dataset {name!r}; known: {sorted(BUNDLE)}") from None
    with _old_format_warnings_silenced():
        raw = spec.read()
    # symbols as var_names (gene_id_column None) are mapped to Ensembl IDs by to_contract itself
    adata = to_contract(raw, species=spec.species, dataset=name, counts_layer="X", gene_id_column=spec.gene_id_column,
                        source=", ".join(f"{s} ({SOURCES[s].archive.filename})" for s in spec.sources))
    adata.uns["gc_lib"].setdefault("symbol_mapping", {})
    adata.uns["gc_lib"].update({"note": spec.note, **{key: raw.uns[key] for key in _READER_RECORDS if key in raw.uns}})
    if max_cells is not None and adata.n_obs > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(adata.n_obs, size=max_cells, replace=False))
        adata = adata[keep].copy()  # anndata drops the label categories no kept cell carries
    return adata


def load_fpkm_lung() -> AnnData:
    """The monocle mouse-lung table (218 genes × 185 cells, **FPKM, not counts**), with its time labels.

    ``X`` holds FPKM; ``uns["gc_lib"]["value_kind"] == "FPKM"``; ``obs["time"]`` is E14.5/E16.5/E18.5/Adult.
    It fails :func:`gc_lib.inputs.contract.check_counts_adata` on purpose: FPKM must not be tokenised as counts.
    """
    import rdata

    def read(source):
        path = fetch(source)
        return rdata.read_rda(path)[path.stem]

    exprs, features, phenotypes = (read(s) for s in ("monocle_lung_exprs", "monocle_lung_features",
                                                     "monocle_lung_phenotypes"))
    genes = pd.Index(np.asarray(exprs.coords[exprs.dims[0]].values, dtype=str))
    cells = pd.Index(np.asarray(exprs.coords[exprs.dims[1]].values, dtype=str))
    var = pd.DataFrame({"gene_symbol": features.loc[genes, "gene_short_name"].astype(str).to_numpy(),
                        "biotype": features.loc[genes, "biotype"].astype(str).to_numpy()},
                       index=genes.str.replace(r"\.\d+$", "", regex=True))
    obs = pd.DataFrame({"time": pd.Categorical(phenotypes.loc[cells, "Time"].astype(str),
                                               categories=["E14.5", "E16.5", "E18.5", "Adult"]),
                        "species": "mouse", "dataset": "monocle_lung"}, index=cells)
    return AnnData(sp.csr_matrix(np.asarray(exprs.values, dtype=np.float32).T), obs=obs, var=var,
                   uns={"gc_lib": {"value_kind": "FPKM", "source": "r-bioc-monocle extdata/lung_*.RData"}})
