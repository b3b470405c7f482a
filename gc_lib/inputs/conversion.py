"""Bring an AnnData into the contract (DESIGN.md §4): the one conversion every reader ends with.

:func:`to_contract` takes an in-memory AnnData; :mod:`gc_lib.inputs.atlas` (files, URLs, Census) and
:mod:`gc_lib.inputs.datasets` (the offline bundle) both end with it, so a notebook never has to know where a
matrix came from:

- the raw counts are found (``counts_layer``, else ``X``, else ``layers["counts"]``, else ``.raw.X``,
  whichever first holds non-negative integers) and stored as CSR ``float32`` in ``X``; other layers,
  ``obsm`` and ``obsp`` are not carried over;
- ``var_names`` become version-less Ensembl gene IDs of the given species (``ENSG…\\.12 → ENSG…``), taken
  from ``var_names`` or an ID column; symbols go to ``var["gene_symbol"]``; genes without such an ID are
  dropped and columns that map to the same ID are summed;
- where no Ensembl ID is found (the scanpy case: symbols as ``var_names``; or Entrez IDs with a symbol
  column), the gene symbols are mapped to Ensembl IDs through the HGNC/MGI tables
  (:func:`gc_lib.inputs.genes.map_symbols_to_ensembl`: approved → previous → alias; ambiguous and unknown
  symbols dropped), with the counts per tier in ``uns["gc_lib"]["symbol_mapping"]`` and a warning when fewer
  than 80 % of the genes map;
- cells left with no counts are dropped; ``obs["species"]`` and ``obs["dataset"]`` are set;
- what was chosen and how much was dropped is recorded in ``uns["gc_lib"]``;
- :func:`gc_lib.inputs.contract.check_counts_adata` has the last word, so e.g. log-normalised values raise a
  :class:`ValueError` that says so instead of being tokenised as if they were counts.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .contract import (
    ENSEMBL_PREFIX,
    SPECIES,
    check_counts_adata,
    counts_matrix,
    is_ensembl_gene_id,
    is_entrez_gene_id,
    is_species_gene_id,
)
from .genes import map_symbols_to_ensembl

#: var columns that commonly hold Ensembl IDs (10x/scanpy, CELLxGENE, Geneformer-style files), in order tried.
GENE_ID_COLUMNS: tuple[str, ...] = ("gene_ids", "gene_id", "feature_id", "ensembl_id", "ensembl_gene_id",
                                    "gene_ensembl_id", "ensembl_ids", "ensembl")
#: var columns that commonly hold gene symbols, in order tried: read as symbols when ``var_names`` are Ensembl
#: IDs, and mapped to Ensembl IDs when no Ensembl ID is found (then before var_names themselves).
SYMBOL_COLUMNS: tuple[str, ...] = ("gene_symbol", "gene_symbols", "feature_name", "gene_name", "gene_names",
                                   "symbol")
#: below this fraction of gene symbols mapped to Ensembl IDs, the mapping warns (the species may be wrong, or
#: the symbols outdated)
MIN_MAPPED_FRACTION = 0.8
_VERSION_SUFFIX = re.compile(r"\.\d+$")


# --------------------------------------------------------------------------------------------

def looks_like_counts(matrix) -> bool:
    """True if the stored values are finite, non-negative integers (a cheap test on the non-zeros)."""
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if values.size == 0:
        return True
    if not np.issubdtype(values.dtype, np.number):
        return False
    if np.issubdtype(values.dtype, np.integer):
        return bool(values.min() >= 0)
    return bool(np.isfinite(values).all() and values.min() >= 0 and (values == np.round(values)).all())


def choose_counts(candidates: list[tuple[str, Any, pd.DataFrame]], counts_layer: str | None, probe):
    """Pick ``(label, matrix, var)`` of the counts among ``candidates`` (ordered: X, layers…, raw.X).

    An explicit ``counts_layer`` ("X", "raw.X" or a layer name) is taken as is; otherwise the first of X,
    layers['counts'], raw.X whose ``probe(matrix)`` looks like counts, falling back to X so the contract check
    names what is wrong with it.
    """
    by_label = {label: (label, matrix, var) for label, matrix, var in candidates}
    if counts_layer is not None:
        label = {"X": "X", "raw": "raw.X", "raw.X": "raw.X"}.get(counts_layer, f"layers[{counts_layer!r}]")
        if label not in by_label:
            raise ValueError(f"counts_layer={counts_layer!r} not found; the file has {sorted(by_label)}")
        return by_label[label]
    if not candidates:
        raise ValueError("the file has no X, layers or .raw: there is no count matrix to read")
    for label in ("X", "layers['counts']", "raw.X"):
        if label in by_label and looks_like_counts(probe(by_label[label][1])):
            return by_label[label]
    return by_label.get("X", candidates[0])


def raw_var_completed(raw_var: pd.DataFrame, var: pd.DataFrame) -> pd.DataFrame:
    """``raw.var`` completed with ``var`` columns it lacks (ID/symbol columns often live only in ``var``)."""
    extra = var.loc[~var.index.duplicated(), [c for c in var.columns if c not in raw_var.columns]]
    return raw_var.join(extra, how="left") if len(extra.columns) else raw_var


@dataclass(frozen=True)
class GenePlan:
    """How the columns of a count matrix become contract genes; computed once per file."""

    columns: np.ndarray | None   # positions of kept columns (None: all)
    merge: sp.csr_matrix | None  # kept columns → unique IDs (sums duplicates); None when all IDs are unique
    var: pd.DataFrame            # index: Ensembl IDs; column gene_symbol (+ the other var columns)
    info: dict[str, Any]


def _pick_column(var: pd.DataFrame, wanted: str | None, usual: Sequence[str], what: str) -> str | None:
    if wanted is not None:
        if wanted not in var.columns:
            raise ValueError(f"{what}={wanted!r} is not a var column; var has {list(var.columns)}")
        return wanted
    return next((c for c in usual if c in var.columns), None)


def _as_str(values) -> pd.Series:
    """Values as stripped strings on a 0..n-1 index, missing values as ""."""
    values = pd.Series(np.asarray(values, dtype=object))
    return values.where(values.notna(), "").astype(str).str.strip()


def _mostly(mask_fn, values: pd.Series) -> bool:
    """True when at least half of the non-empty ``values`` pass ``mask_fn`` (and there is one)."""
    filled = values[values != ""]
    return bool(len(filled) and mask_fn(filled).mean() >= 0.5)


def _ensembl_id_column(var: pd.DataFrame, names: pd.Series, gene_id_column: str | None) -> tuple[str | None, bool]:
    """Where the Ensembl IDs are: ``(column, False)``, ``(None, True)`` for var_names, ``(None, False)`` for none.

    ``gene_id_column`` is taken as is; else var_names when mostly Ensembl; else the first usual ID column
    whose values are mostly Ensembl IDs (a ``gene_ids`` column of Entrez IDs does not count).
    """
    if gene_id_column is not None:
        return _pick_column(var, gene_id_column, (), "gene_id_column"), False
    if _mostly(is_ensembl_gene_id, names):
        return None, True
    found = next((c for c in GENE_ID_COLUMNS if c in var.columns and _mostly(is_ensembl_gene_id, _as_str(var[c]))),
                 None)
    return found, False


def _tried(var: pd.DataFrame, names: pd.Series) -> str:
    """What was looked at for Ensembl IDs, for error messages."""
    entrez = ", they look like Entrez/NCBI gene IDs" if _mostly(is_entrez_gene_id, names) else ""
    present = [c for c in GENE_ID_COLUMNS if c in var.columns]
    columns = f"the ID columns {present} hold none" if present else f"var has none of the ID columns {GENE_ID_COLUMNS}"
    return f"var_names are not Ensembl gene IDs (e.g. {list(names[:3])}{entrez}); {columns}"


def _symbol_source(var: pd.DataFrame, names: pd.Series, symbol_column: str | None) -> tuple[str | None, str]:
    """Where the gene symbols to map are: ``(column, label)``; column None means var_names.

    ``symbol_column`` is taken as is; else the first usual symbol column with a value; else var_names unless
    they look like Entrez IDs or plain integers. Raises ``ValueError`` naming what was tried when none is found.
    """
    column = _pick_column(var, symbol_column, (), "symbol_column")
    if column is None:
        column = next((c for c in SYMBOL_COLUMNS if c in var.columns and (_as_str(var[c]) != "").any()), None)
    if column is not None:
        return column, f"var[{column!r}]"
    if (names != "").any() and not _mostly(is_entrez_gene_id, names):
        return None, "var_names"
    raise ValueError(f"no genes found. Tried Ensembl IDs: {_tried(var, names)}. Tried gene symbols: var has none "
                     f"of the symbol columns {SYMBOL_COLUMNS} and var_names are not symbols. Pass "
                     f"gene_id_column= (a var column of Ensembl IDs) or symbol_column= (a var column of symbols)")


def _map_symbols(symbols: pd.Series, species: str, where: str, tried: str) -> tuple[pd.Series, dict[str, Any]]:
    """Ensembl IDs ("" where unmapped) of gene ``symbols`` and the mapping record for ``uns["gc_lib"]``.

    Tiers as :func:`gc_lib.inputs.genes.map_symbols_to_ensembl` (ambiguous and unknown symbols are dropped).
    Warns when under :data:`MIN_MAPPED_FRACTION` of the genes map; raises ``ValueError`` when none does.
    """
    ids, counts = map_symbols_to_ensembl(symbols.to_numpy(), species)
    ids = _as_str(ids.to_numpy())
    mapped = int((ids != "").sum())
    record = {"source": where, **counts, "mapped": mapped, "mapped_fraction": mapped / max(len(ids), 1)}
    tiers = ", ".join(f"{k} {counts[k]}" for k in ("approved", "previous", "alias", "ambiguous", "unknown"))
    if not mapped:
        raise ValueError(f"no genes found. Tried Ensembl IDs: {tried}. Tried gene symbols: none of the {len(ids)} "
                         f"in {where} (e.g. {list(symbols[:3])}) is a {species} symbol ({tiers}). Is "
                         f"species={species!r} right? Else pass gene_id_column= (a var column of Ensembl IDs) or "
                         f"symbol_column= (a var column of symbols)")
    if record["mapped_fraction"] < MIN_MAPPED_FRACTION:
        warnings.warn(f"only {mapped} of {len(ids)} gene symbols in {where} ({record['mapped_fraction']:.0%}) map "
                      f"to {species} Ensembl IDs ({tiers}); the others are dropped. Are they {species} symbols?",
                      UserWarning, stacklevel=4)
    return ids, record


def plan_genes(var: pd.DataFrame, species: str, gene_id_column: str | None,
               symbol_column: str | None) -> GenePlan:
    """How the genes of ``var`` become contract genes: Ensembl IDs, symbols, drops and sums.

    IDs come from ``gene_id_column``, else var_names if mostly Ensembl, else the first usual ID column holding
    Ensembl IDs; symbols then from ``symbol_column``, else the old var_names (when IDs came from a column),
    else a usual symbol column. With no Ensembl IDs anywhere, gene symbols (``symbol_column``, a usual symbol
    column, or var_names unless they are Entrez IDs) are mapped to Ensembl IDs through the HGNC/MGI tables and
    the counts per tier recorded in ``info["symbol_mapping"]``.
    """
    names = _as_str(var.index)
    id_col, ids_in_names = _ensembl_id_column(var, names, gene_id_column)
    mapping = None
    if id_col is not None or ids_in_names:
        ids = (names if ids_in_names else _as_str(var[id_col])).str.replace(_VERSION_SUFFIX, "", regex=True)
        sym_col = _pick_column(var, symbol_column, () if id_col is not None else SYMBOL_COLUMNS, "symbol_column")
        symbols = _as_str(var[sym_col]) if sym_col else (names if id_col is not None else _as_str([""] * len(names)))
        id_source = "var_names" if ids_in_names else f"var[{id_col!r}]"
        symbol_source = f"var[{sym_col!r}]" if sym_col else ("var_names" if id_col is not None else "none")
    else:
        sym_col, symbol_source = _symbol_source(var, names, symbol_column)
        symbols = names if sym_col is None else _as_str(var[sym_col])
        ids, mapping = _map_symbols(symbols, species, symbol_source, _tried(var, names))
        id_source = f"symbols in {symbol_source}"
    keep = is_species_gene_id(ids, species)
    if not keep.any():
        raise ValueError(f"no {species} Ensembl gene IDs ({ENSEMBL_PREFIX[species]}…) in {id_source} "
                         f"(e.g. {list(ids[:3])}); is species={species!r} right, or is the ID in another column "
                         f"(gene_id_column=)?")
    positions = np.flatnonzero(keep)
    codes, uniques = pd.factorize(ids.to_numpy()[positions])
    first = np.unique(codes, return_index=True)[1]
    merge = None
    if len(uniques) < len(positions):
        merge = sp.csr_matrix((np.ones(len(codes), np.float32), (np.arange(len(codes)), codes)),
                              shape=(len(codes), len(uniques)))
    drop = [c for c in (id_col, sym_col, "gene_symbol") if c and c in var.columns]
    out = var.iloc[positions[first]].drop(columns=drop).copy()
    out.index = pd.Index(np.asarray(uniques, dtype=str))
    out.insert(0, "gene_symbol", symbols.to_numpy(dtype=object)[positions[first]])
    info = {"gene_id_source": id_source, "symbol_source": symbol_source,
            "dropped_genes": int((~keep).sum()), "summed_duplicate_genes": int(len(positions) - len(uniques))}
    if mapping is not None:
        info["symbol_mapping"] = mapping
    return GenePlan(None if keep.all() else positions, merge, out, info)


def _constant(value: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


def gene_columns(plan: GenePlan, matrix) -> sp.csr_matrix:
    """The count matrix's columns as the plan's genes: CSR float32, dropped columns out, duplicates summed."""
    X = sp.csr_matrix(matrix, dtype=np.float32)
    if plan.columns is not None:
        X = X[:, plan.columns]
    if plan.merge is not None:
        X = sp.csr_matrix(X @ plan.merge)
    X.eliminate_zeros()
    X.sort_indices()
    return X


def first_column_per_gene(plan: GenePlan) -> np.ndarray:
    """Positions (in the original matrix) of one column per gene of ``plan.var``, in its order: for a gene that several
    columns map to, the first of them — what values that do not add (log-normalised expression) keep."""
    if plan.columns is not None:
        kept = np.asarray(plan.columns)
    else:                                     # every column kept: as many as merge has rows, or as there are genes
        kept = np.arange(len(plan.var) if plan.merge is None else plan.merge.shape[0])
    if plan.merge is None:
        return kept
    return kept[np.unique(plan.merge.indices, return_index=True)[1]]  # one stored entry per row: the gene's code


def apply_plan(plan: GenePlan, matrix, obs: pd.DataFrame, *, species: str, dataset: str | None,
           info: dict[str, Any]) -> AnnData | None:
    """Counts rows + their obs → a contract AnnData (checked), or None if every cell is empty."""
    X = gene_columns(plan, matrix)
    obs = obs.copy()
    nonempty = np.diff(X.indptr) > 0  # no stored non-zero (negative values are left for the contract to name)
    if not nonempty.all():
        X, obs = X[nonempty], obs.iloc[np.flatnonzero(nonempty)]
    if X.shape[0] == 0:
        return None
    obs["species"] = _constant(species, len(obs))
    if dataset is not None:
        obs["dataset"] = _constant(dataset, len(obs))
    uns_info = {**info, **plan.info, "dropped_cells": int((~nonempty).sum())}
    adata = AnnData(X=X, obs=obs, var=plan.var.copy(), uns={"gc_lib": uns_info})
    try:
        check_counts_adata(adata)
    except ValueError as exc:
        raise ValueError(f"{info.get('source', 'input')} (counts from {info.get('counts_source')}): {exc}") from None
    return adata


def memory_candidates(adata: AnnData) -> list:
    cands = [("X", adata.X, adata.var)] if adata.X is not None else []
    cands += [(f"layers[{k!r}]", m, adata.var) for k, m in adata.layers.items()]
    if adata.raw is not None:
        cands.append(("raw.X", adata.raw.X, raw_var_completed(adata.raw.var, adata.var)))
    return cands


def check_species(species: str) -> None:
    if species not in SPECIES:
        raise ValueError(f"species must be one of {SPECIES}, got {species!r}")




def map_genes(adata: AnnData, *, species: str, gene_id_column: str | None = None,
              symbol_column: str | None = None) -> AnnData:
    """``adata``'s genes brought to the contract, every cell kept in order (the tokenizer's door).

    Unlike :func:`to_contract` the counts are taken where the contract reads them (``layers["counts"]``, else
    ``X``) and cells are not dropped, so row ``i`` is still the input's cell ``i`` (a cell whose counts were
    all in dropped genes is left empty). Genes are planned as in :func:`to_contract` (Ensembl IDs found or
    gene symbols mapped); ``obs["species"]`` is set and ``uns["gc_lib"]`` records the gene mapping. The result
    is not checked: the caller decides what to do with empty cells.
    """
    check_species(species)
    plan = plan_genes(adata.var, species, gene_id_column, symbol_column)
    obs = adata.obs.copy()
    obs["species"] = _constant(species, len(obs))
    return AnnData(X=gene_columns(plan, counts_matrix(adata)), obs=obs, var=plan.var.copy(),
                   uns={"gc_lib": dict(plan.info)})


def to_contract(adata: AnnData, *, species: str, dataset: str | None = None, counts_layer: str | None = None,
                gene_id_column: str | None = None, symbol_column: str | None = None,
                source: str | None = None) -> AnnData:
    """A new AnnData in the contract, made from an in-memory ``adata`` (which is not modified).

    ``species`` is "human" or "mouse"; ``counts_layer`` says where the counts are ("X", "raw.X" or a layer
    name; default: found automatically); ``gene_id_column`` / ``symbol_column`` name the var columns of
    Ensembl IDs / symbols (default: detected); ``dataset`` fills ``obs["dataset"]``; ``source`` is recorded
    in ``uns["gc_lib"]`` and named in errors. Raises ``ValueError`` when the data cannot meet the contract.

    Gene symbols are accepted where no Ensembl ID is found (symbols as ``var_names``, as scanpy writes them,
    or in a symbol column): they are mapped to Ensembl IDs (:func:`plan_genes`) and
    ``uns["gc_lib"]["symbol_mapping"]`` records ``source, symbols, approved, previous, alias, ambiguous,
    unknown, mapped, mapped_fraction``; ``var["gene_symbol"]`` keeps the symbol as given.
    """
    check_species(species)
    label, matrix, var = choose_counts(memory_candidates(adata), counts_layer, lambda m: m)
    plan = plan_genes(var, species, gene_id_column, symbol_column)
    info = {"source": source or "AnnData", "counts_source": label}
    out = apply_plan(plan, matrix, adata.obs, species=species, dataset=dataset, info=info)
    if out is None:
        raise ValueError(f"{source or 'input'}: every cell is empty (zero total counts)")
    return out
