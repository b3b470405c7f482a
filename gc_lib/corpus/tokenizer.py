"""The GeneCompass tokenizer: counts → each cell's top-N genes by normalised value (DESIGN.md §1).

A cell's value for gene ``g`` is ``log2(1 + count_g / median_g)``, ``median_g`` being the gene's non-zero
median over the whole corpus (:mod:`gc_lib.corpus.medians`). With ``library_size`` set, counts are first scaled
to that many per cell (``count × library_size / total``); the published code skips that step, so it is off
by default. The cell becomes its top ``n_top`` genes (2048 in the paper) in descending value, ties by token
id (the kernel ranks on ``float32(count × scale / median)``, the argument of the logarithm, so the order is
exact; see :mod:`gc_lib.corpus._rank_kernels`, and :mod:`gc_lib.corpus._rank_native` for its compiled copy).
Stored per cell: ``input_ids``, ``values``, ``length``, ``species`` (0 human, 1 mouse), and ``dataset`` and ``row``
to join back to the source ``.obs``. The species token is not part of ``input_ids``: the model prepends it as the
cell token.

The corpus builder and inference share one code path, :func:`rank_rows`, so new data is
tokenised exactly like the corpus. Shards are written by :mod:`gc_lib.corpus.shards`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from anndata import AnnData

from ..core.atomic import write_json, write_parquet
from ..inputs.contract import SPECIES, check_counts_adata, counts_matrix, is_ensembl_gene_id
from ..inputs.conversion import map_genes
from ._buffers import reusable
from ._rank_native import ranking_kernel
from .vocab import SPECIAL_TOKENS, Vocabulary

SHARD_SCHEMA = pa.schema([
    ("input_ids", pa.list_(pa.int32())),   # gene tokens, highest normalised value first
    ("values", pa.list_(pa.float32())),    # log2(1 + count / median) of each token
    ("length", pa.int32()),                # number of tokens
    ("species", pa.int8()),                # 0 human, 1 mouse (index into contract.SPECIES)
    ("dataset", pa.string()),              # source dataset ...
    ("row", pa.int64()),                   # ... and the cell's row in it, to join back to its .obs
])


@dataclass(frozen=True)
class TokenizedCells:
    """Flat token arrays of a batch of cells: cell ``i`` owns ``ids[offsets[i]:offsets[i + 1]]``."""
    ids: np.ndarray       # int32
    values: np.ndarray    # float32
    offsets: np.ndarray   # int32, len = cells + 1
    rows: np.ndarray      # int64: each cell's row in the source

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def to_table(self, species: str, dataset: str) -> pa.Table:
        """The cells as an Arrow table with :data:`SHARD_SCHEMA` (no copy of the token arrays)."""
        n = len(self.rows)
        offsets = pa.array(self.offsets, type=pa.int32())
        return pa.Table.from_arrays([
            pa.ListArray.from_arrays(offsets, pa.array(self.ids, type=pa.int32())),
            pa.ListArray.from_arrays(offsets, pa.array(self.values, type=pa.float32())),
            pa.array(self.lengths.astype(np.int32)),
            pa.array(np.full(n, SPECIES.index(species), dtype=np.int8)),
            pa.array([dataset] * n, type=pa.string()),
            pa.array(self.rows.astype(np.int64)),
        ], schema=SHARD_SCHEMA)


def _token_bits(n_tokens: int) -> int:
    return max(1, int(n_tokens - 1).bit_length())


def rank_rows(counts: sp.csr_matrix, col_token: np.ndarray, col_median: np.ndarray, *, n_top: int,
              library_size: float | None, n_tokens: int, keep: np.ndarray | None = None,
              row_offset: int = 0, buffers: dict | None = None) -> TokenizedCells:
    """Tokenise the kept rows of a CSR count chunk: the kernel call every tokenising path goes through.

    ``col_token``/``col_median``: each column's token id (-1: ignored) and median; ``n_tokens``: vocabulary
    size; ``row_offset``: the chunk's first row in its source, so ``rows`` index the source's ``.obs``;
    ``buffers``: a dict of arrays reused between calls (:func:`gc_lib.corpus._buffers.reusable`): the cells' ``ids``
    and ``values`` are then views of its arrays, valid until the next call with it.
    """
    counts = counts if sp.isspmatrix_csr(counts) else sp.csr_matrix(counts)
    data = np.asarray(counts.data, dtype=np.float32)
    indices = np.asarray(counts.indices, dtype=np.int32)
    indptr = np.asarray(counts.indptr, dtype=np.int64)
    keep = np.ones(counts.shape[0], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    capacity = int(np.minimum(np.diff(indptr)[keep], n_top).sum())
    ids, values = reusable(buffers, "ids", capacity, np.int32), reusable(buffers, "values", capacity, np.float32)
    lengths = np.empty(int(keep.sum()), np.int32)
    used = ranking_kernel()(data, indices, indptr, keep, np.asarray(col_token, dtype=np.int32),
                            np.asarray(col_median, dtype=np.float64), n_top, library_size or 0.0,
                            _token_bits(n_tokens), ids, values, lengths)
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    rows = np.flatnonzero(keep).astype(np.int64) + row_offset
    return TokenizedCells(ids[:used], values[:used], offsets, rows)


def _one_species(adata: AnnData, species: str | None) -> str:
    """The one species of ``adata``'s cells: ``obs["species"]``, else ``species``; they must agree."""
    if "species" not in adata.obs:
        if species is None:
            raise ValueError(f"obs['species'] is missing: set it or pass species= (one of {SPECIES})")
        return species
    found = adata.obs["species"].astype(str).unique()
    if len(found) != 1:
        raise ValueError(f"tokenise one species at a time; obs['species'] holds {list(found)}")
    if species is not None and species != found[0]:
        raise ValueError(f"species={species!r} but obs['species'] is {found[0]!r}")
    return str(found[0])


class Tokenizer:
    """Vocabulary + per-token medians + ranking options; tokenises CSR rows, AnnData and files.

    ``medians`` is indexed by token id (special tokens NaN). ``n_top`` caps the tokens per cell;
    ``library_size`` (e.g. ``1e4``) switches on library-size scaling, which must match the medians' pass.
    """

    def __init__(self, vocab: Vocabulary, medians: np.ndarray, *, n_top: int = 2048,
                 library_size: float | None = None):
        if n_top < 1:
            raise ValueError(f"n_top must be positive, got {n_top}")
        if library_size is not None and not library_size > 0:
            raise ValueError(f"library_size must be positive or None, got {library_size}")
        medians = np.asarray(medians, dtype=np.float64)
        if medians.shape != (len(vocab),):
            raise ValueError(f"medians must be a 1-d array with one entry per token ({len(vocab)}), "
                             f"got shape {medians.shape}")
        genes = medians[len(SPECIAL_TOKENS):]
        if not (np.isfinite(genes).all() and (genes > 0).all()):
            raise ValueError("every gene token needs a positive, finite median")
        self.vocab, self.medians, self.n_top, self.library_size = vocab, medians, n_top, library_size

    # -- lookup tables --------------------------------------------------------------------------------
    def column_tables(self, gene_ids, species: str) -> tuple[np.ndarray, np.ndarray]:
        """Per input column: its token id (-1: not in the vocabulary or another species) and median."""
        if species not in SPECIES:
            raise ValueError(f"unknown species {species!r}; expected one of {SPECIES}")
        tokens = self.vocab.encode(gene_ids)
        known = tokens >= 0
        other = np.zeros_like(known)
        other[known] = (self.vocab.genes["species"].to_numpy()[tokens[known] - len(SPECIAL_TOKENS)] != species)
        tokens[other] = -1
        return tokens, np.where(tokens >= 0, self.medians[np.maximum(tokens, 0)], np.nan)

    # -- the one code path ------------------------------------------------------------------------------
    def tokenize_rows(self, counts: sp.csr_matrix, col_token: np.ndarray, col_median: np.ndarray,
                      keep: np.ndarray | None = None, row_offset: int = 0) -> TokenizedCells:
        """Tokenise the kept rows of a CSR count chunk (columns described by :meth:`column_tables`)."""
        return rank_rows(counts, col_token, col_median, n_top=self.n_top, library_size=self.library_size,
                         n_tokens=len(self.vocab), keep=keep, row_offset=row_offset)

    def tokenize(self, adata: AnnData, *, dataset: str | None = None, species: str | None = None) -> pa.Table:
        """Tokenise an AnnData into a table with :data:`SHARD_SCHEMA`.

        A contract AnnData is checked first and tokenised as is. One whose var_names hold no Ensembl ID (gene
        symbols, as scanpy writes them) has its genes mapped first, as :func:`gc_lib.inputs.conversion.to_contract`
        maps them (ambiguous and unknown symbols dropped, a warning under 80 % mapped); cells whose counts were
        all in dropped genes are skipped, and ``row`` still indexes the input's cells. ``species`` is needed when
        ``obs`` has no "species" column (and must agree with it when it has one). ``dataset`` fills the
        ``dataset`` column (default: ``obs["dataset"]`` if it holds one value, else "adata").
        """
        keep = None
        if adata.n_vars and not is_ensembl_gene_id(adata.var_names).any():
            adata = map_genes(adata, species=_one_species(adata, species))
            keep = np.diff(sp.csr_matrix(adata.X).indptr) > 0
            check_counts_adata(adata if keep.all() else adata[keep])
        else:
            check_counts_adata(adata)
        name = _one_species(adata, species)
        if dataset is None:
            names = adata.obs["dataset"].astype(str).unique() if "dataset" in adata.obs else []
            dataset = names[0] if len(names) == 1 else "adata"
        col_token, col_median = self.column_tables(adata.var_names, name)
        cells = self.tokenize_rows(sp.csr_matrix(counts_matrix(adata)), col_token, col_median, keep=keep)
        return cells.to_table(name, dataset)

    def coverage(self, gene_ids, species: str) -> dict[str, int]:
        """How many of a dataset's genes the vocabulary knows (genes outside it are ignored when tokenising)."""
        col_token, _ = self.column_tables(gene_ids, species)
        return {"genes": len(col_token), "in_vocabulary": int((col_token >= 0).sum())}

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, *, gene_stats: pd.DataFrame | None = None) -> None:
        """Write ``vocab.json``, ``medians.parquet`` (token, gene, species, median, plus any ``gene_stats``
        columns, row-aligned with the gene tokens) and ``tokenizer.json`` (``n_top``, ``library_size``,
        vocabulary hash) into ``directory``."""
        directory = Path(directory)
        self.vocab.save(directory / "vocab.json")
        write_json({"n_top": self.n_top, "library_size": self.library_size, "vocab_hash": self.vocab.hash},
                   directory / "tokenizer.json")
        genes = self.vocab.genes
        table = pd.DataFrame({"token": genes.index.to_numpy(), "gene_id": genes["gene_id"].to_numpy(),
                              "species": genes["species"].to_numpy(), "symbol": genes["symbol"].to_numpy(),
                              "median": self.medians[genes.index.to_numpy()]})
        if gene_stats is not None:
            table = pd.concat([table, gene_stats.reset_index(drop=True)], axis=1)
        write_parquet(table, directory / "medians.parquet")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        """The tokenizer saved in ``directory`` (a corpus directory holds one); clear errors for missing or
        mismatched files."""
        directory = Path(directory)
        for name in ("vocab.json", "medians.parquet", "tokenizer.json"):
            if not (directory / name).exists():
                raise FileNotFoundError(f"{directory / name} is missing: not a saved tokenizer or corpus")
        options = json.loads((directory / "tokenizer.json").read_text())
        vocab = Vocabulary.load(directory / "vocab.json")
        if options["vocab_hash"] != vocab.hash:
            raise ValueError(f"{directory}: tokenizer.json was saved with another vocabulary")
        table = pd.read_parquet(directory / "medians.parquet")
        medians = np.full(len(vocab), np.nan)
        medians[table["token"].to_numpy()] = table["median"].to_numpy()
        if not (table["gene_id"].to_numpy() == vocab.genes.loc[table["token"], "gene_id"].to_numpy()).all():
            raise ValueError(f"{directory}: medians.parquet does not match vocab.json")
        return cls(vocab, medians, n_top=options["n_top"], library_size=options["library_size"])
