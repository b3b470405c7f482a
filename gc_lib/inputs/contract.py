"""The AnnData contract, checked at the door (DESIGN.md §4).

Every AnnData that enters the corpus builder, the tokenizer or a model must carry:

- raw, non-negative integer counts in ``layers["counts"]`` if present, else in ``X``;
- ``var_names`` that are Ensembl gene IDs (``ENSG…`` human, ``ENSMUSG…`` mouse), unique,
  with symbols in ``var["gene_symbol"]``;
- ``obs["species"]`` in :data:`SPECIES` for every cell;
- no empty cells (a cell with zero total counts).

:func:`check_counts_adata` raises a :class:`ValueError` that names the first problem it finds and changes
nothing. It reads only the stored non-zeros of a sparse matrix, so it is cheap on large data.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from anndata import AnnData

SPECIES: tuple[str, ...] = ("human", "mouse")
ENSEMBL_PREFIX = {"human": "ENSG", "mouse": "ENSMUSG"}
_ENSEMBL_GENE = r"ENS(MUS)?G[0-9]{11}(\.[0-9]+)?"
_ENTREZ_GENE = re.compile(r"^(GeneID:)?\d+$", re.IGNORECASE)


def counts_matrix(adata: AnnData):
    """The raw-count matrix of ``adata``: ``layers["counts"]`` if present, else ``X``."""
    return adata.layers["counts"] if "counts" in adata.layers else adata.X


def _full_matches(names, pattern: str) -> np.ndarray:
    """Boolean mask: which of ``names`` (as ``str``) match ``pattern`` whole.

    pyarrow's vectorised RE2 rather than a Python loop over ``re``: ~2 ms instead of ~6 per 20,000 names (an input is
    checked three times before it is read), and no Python object per name."""
    text = [str(n) for n in names]
    try:
        found = pc.match_substring_regex(pa.array(text, type=pa.string()), f"^(?:{pattern})$")
    except (UnicodeEncodeError, pa.ArrowInvalid):  # e.g. a lone surrogate, which UTF-8 cannot hold
        whole = re.compile(pattern)
        return np.fromiter((whole.fullmatch(t) is not None for t in text), dtype=bool, count=len(text))
    return found.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def is_ensembl_gene_id(names) -> np.ndarray:
    """Boolean mask: which of ``names`` look like Ensembl human/mouse gene IDs (version suffix allowed)."""
    return _full_matches(names, _ENSEMBL_GENE)


def is_species_gene_id(names, species: str) -> np.ndarray:
    """Boolean mask: which of ``names`` are Ensembl gene IDs of ``species`` (``ENSG`` + 11 digits for human,
    ``ENSMUSG`` + 11 for mouse; a ``.N`` version suffix allowed): the one test of "a gene of this species" that the
    contract, the converters, the gene tables and the corpus builder share."""
    if species not in ENSEMBL_PREFIX:
        raise ValueError(f"unknown species {species!r}; expected one of {SPECIES}")
    return _full_matches(names, ENSEMBL_PREFIX[species] + r"[0-9]{11}(\.[0-9]+)?")


def is_entrez_gene_id(names) -> np.ndarray:
    """Boolean mask: which of ``names`` look like NCBI/Entrez gene IDs (``GeneID:7157`` or a plain ``7157``).

    Such names are neither Ensembl IDs nor symbols (a plain integer is also what a default AnnData index
    holds), so gene mapping looks for symbols elsewhere instead of resolving them as symbols.
    """
    return np.fromiter((bool(_ENTREZ_GENE.match(str(n).strip())) for n in names), dtype=bool, count=len(names))


def _examples(values, k: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:k])


def strip_version(ensembl_ids) -> np.ndarray:
    """Ensembl IDs without their ``.N`` version suffix (``ENSG….1`` and ``ENSG….2`` are one gene, one token)."""
    return np.array([str(g).split(".", 1)[0] for g in ensembl_ids], dtype=object)


def check_gene_ids(names) -> None:
    """Raise ``ValueError`` unless ``names`` are unique Ensembl gene IDs (version suffixes ignored)."""
    names = pd.Index(np.asarray(names, dtype=str))
    ok = is_ensembl_gene_id(names)
    if not ok.any():
        raise ValueError(
            f"var_names are not Ensembl gene IDs (e.g. {_examples(names)}). Put Ensembl IDs in var_names "
            f"and symbols in var['gene_symbol']; gc_lib.inputs.conversion.to_contract(adata, species=...) "
            f"maps gene symbols to Ensembl IDs.")
    if not ok.all():
        raise ValueError(f"{(~ok).sum()} of {len(names)} var_names are not Ensembl gene IDs "
                         f"(e.g. {_examples(names[~ok])}); drop or map them first.")
    dup = names[pd.Index(strip_version(names)).duplicated()]
    if len(dup):
        raise ValueError(f"{len(dup)} duplicated genes in var_names (e.g. {_examples(dup.unique())}; version "
                         f"suffixes ignored); sum or drop duplicates first.")


def _check_genes(adata: AnnData) -> None:
    check_gene_ids(adata.var_names)
    if "gene_symbol" not in adata.var:
        raise ValueError("var['gene_symbol'] is missing: the contract keeps gene symbols there "
                         "(gc_lib.inputs.genes can add them from the annotation tables).")


def _check_species(adata: AnnData) -> None:
    if "species" not in adata.obs:
        raise ValueError(f"obs['species'] is missing: set it to one of {SPECIES} for every cell.")
    species = adata.obs["species"].astype(str)
    unknown = sorted(set(species.unique()) - set(SPECIES))
    if unknown:
        raise ValueError(f"unknown species {unknown} in obs['species']; expected one of {SPECIES}.")
    for name in species.unique():
        if not is_species_gene_id(adata.var_names, name).any():
            raise ValueError(f"cells are labelled {name!r} but no var_name is a {name} Ensembl ID "
                             f"({ENSEMBL_PREFIX[name]}…); is obs['species'] right?")


def _check_values(matrix, where: str) -> None:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if values.size and not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{where} has non-numeric dtype {values.dtype}")
    if values.size and np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise ValueError(f"{where} contains NaN or infinite values ({(~np.isfinite(values)).sum()} entries).")
    if values.size and values.min() < 0:
        raise ValueError(f"{where} contains negative values (min {values.min():g}): raw counts are expected, "
                         f"not scaled or centred data.")
    if values.size and np.issubdtype(values.dtype, np.floating):
        frac = values[values != np.round(values)]
        if frac.size:
            raise ValueError(
                f"{where} is not raw counts: {frac.size} non-integer values (e.g. {_examples(np.unique(frac)[:3])}). "
                f"It looks log-normalised or scaled; pass raw counts in X or layers['counts'].")


def check_counts_adata(adata: AnnData) -> None:
    """Raise ``ValueError`` naming the first violation of the AnnData contract; return ``None`` if it holds."""
    if not isinstance(adata, AnnData):
        raise ValueError(f"expected an AnnData, got {type(adata).__name__}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"empty AnnData ({adata.n_obs} cells × {adata.n_vars} genes)")
    _check_genes(adata)
    _check_species(adata)
    where = "layers['counts']" if "counts" in adata.layers else "X"
    matrix = counts_matrix(adata)
    _check_values(matrix, where)
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    empty = int((totals == 0).sum())
    if empty:
        raise ValueError(f"{empty} empty cells (zero total counts in {where}); filter them first, e.g. "
                         f"sc.pp.filter_cells(adata, min_counts=1).")
