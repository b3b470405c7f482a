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
- cells left with no counts are dropped; ``obs["species"]`` and ``obs["dataset"]`` are set;
- what was chosen and how much was dropped is recorded in ``uns["gc_lib"]``;
- :func:`gc_lib.inputs.contract.check_counts_adata` has the last word, so e.g. log-normalised values raise a
  :class:`ValueError` that says so instead of being tokenised as if they were counts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .contract import ENSEMBL_PREFIX, SPECIES, check_counts_adata, is_ensembl_gene_id

#: var columns that commonly hold Ensembl IDs (10x/scanpy, CELLxGENE, Geneformer-style files), in order tried.
GENE_ID_COLUMNS: tuple[str, ...] = ("gene_ids", "gene_id", "feature_id", "ensembl_id", "ensembl_gene_id",
                                    "gene_ensembl_id", "ensembl_ids", "ensembl")
#: var columns that commonly hold gene symbols, used when ``var_names`` are already Ensembl IDs.
SYMBOL_COLUMNS: tuple[str, ...] = ("gene_symbol", "gene_symbols", "feature_name", "gene_name", "gene_names",
                                   "symbol")
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


def plan_genes(var: pd.DataFrame, species: str, gene_id_column: str | None,
                symbol_column: str | None) -> GenePlan:
    """IDs from ``gene_id_column``, else var_names if mostly Ensembl, else the first usual ID column; symbols
    from ``symbol_column``, else the old var_names (when IDs came from a column), else a usual symbol column."""
    names = pd.Index(var.index.astype(str))
    id_col = _pick_column(var, gene_id_column, (), "gene_id_column")
    if id_col is None and is_ensembl_gene_id(names).mean() < 0.5:
        id_col = _pick_column(var, None, GENE_ID_COLUMNS, "gene_id_column")
        if id_col is None:
            raise ValueError(f"var_names are not Ensembl gene IDs (e.g. {list(names[:3])}) and var has none of "
                             f"the usual ID columns {GENE_ID_COLUMNS}; pass gene_id_column=")
    raw_ids = names.to_series(index=range(len(names))) if id_col is None else var[id_col].reset_index(drop=True)
    sym_col = _pick_column(var, symbol_column, () if id_col is not None else SYMBOL_COLUMNS, "symbol_column")
    if sym_col is not None:
        symbols = var[sym_col].astype(object).where(var[sym_col].notna(), "").astype(str).to_numpy()
    else:
        symbols = names.to_numpy() if id_col is not None else np.full(len(names), "", dtype=object)

    ids = raw_ids.astype(object).where(raw_ids.notna(), "").astype(str).str.strip()
    ids = ids.str.replace(_VERSION_SUFFIX, "", regex=True)
    keep = ids.str.fullmatch(ENSEMBL_PREFIX[species] + r"\d{11}").to_numpy(dtype=bool)
    if not keep.any():
        raise ValueError(f"no {species} Ensembl gene IDs ({ENSEMBL_PREFIX[species]}…) in "
                         f"{'var_names' if id_col is None else f'var[{id_col!r}]'} (e.g. {list(ids[:3])}); "
                         f"is species={species!r} right, or is the ID in another column (gene_id_column=)?")
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
    out.insert(0, "gene_symbol", np.asarray(symbols[positions[first]], dtype=object))
    info = {"gene_id_source": "var_names" if id_col is None else f"var[{id_col!r}]",
            "symbol_source": "var_names" if sym_col is None and id_col is not None
            else (f"var[{sym_col!r}]" if sym_col else "none"),
            "dropped_genes": int((~keep).sum()), "summed_duplicate_genes": int(len(positions) - len(uniques))}
    return GenePlan(None if keep.all() else positions, merge, out, info)


def _constant(value: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


def apply_plan(plan: GenePlan, matrix, obs: pd.DataFrame, *, species: str, dataset: str | None,
           info: dict[str, Any]) -> AnnData | None:
    """Counts rows + their obs → a contract AnnData (checked), or None if every cell is empty."""
    X = sp.csr_matrix(matrix, dtype=np.float32)
    if plan.columns is not None:
        X = X[:, plan.columns]
    if plan.merge is not None:
        X = sp.csr_matrix(X @ plan.merge)
    X.eliminate_zeros()
    X.sort_indices()
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




def to_contract(adata: AnnData, *, species: str, dataset: str | None = None, counts_layer: str | None = None,
                gene_id_column: str | None = None, symbol_column: str | None = None,
                source: str | None = None) -> AnnData:
    """A new AnnData in the contract, made from an in-memory ``adata`` (which is not modified).

    ``species`` is "human" or "mouse"; ``counts_layer`` says where the counts are ("X", "raw.X" or a layer
    name; default: found automatically); ``gene_id_column`` / ``symbol_column`` name the var columns of
    Ensembl IDs / symbols (default: detected); ``dataset`` fills ``obs["dataset"]``; ``source`` is recorded
    in ``uns["gc_lib"]`` and named in errors. Raises ``ValueError`` when the data cannot meet the contract.
    """
    check_species(species)
    label, matrix, var = choose_counts(memory_candidates(adata), counts_layer, lambda m: m)
    plan = plan_genes(var, species, gene_id_column, symbol_column)
    info = {"source": source or "AnnData", "counts_source": label}
    out = apply_plan(plan, matrix, adata.obs, species=species, dataset=dataset, info=info)
    if out is None:
        raise ValueError(f"{source or 'input'}: every cell is empty (zero total counts)")
    return out
