"""Tokenised cells held in memory and batched for inference and fine-tuning (embedding, classifiers).

Pretraining streams shards (:mod:`gc_lib.model.data_loader`); downstream work holds a few thousand cells in memory:
:class:`CellTokens` keeps each cell's token ids, its **float** expression values (the published fine-tuning
collator cast them to integers, zeroing most of them) and its **species code** (the published code never passed
it, so mouse cells got the human token). :func:`length_batches` groups cells of similar length so little of a
batch is padding; :func:`collate` pads one batch into the tensors :meth:`GeneCompass.encode` takes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from ..corpus.tokenizer import Tokenizer
from ..inputs.contract import SPECIES


@dataclass
class CellTokens:
    """Ragged token ids and values of cells (rank order, highest first) and one species code per cell
    (index into :data:`gc_lib.inputs.contract.SPECIES`: 0 human, 1 mouse)."""
    ids: list[np.ndarray]
    values: list[np.ndarray]
    species: np.ndarray

    def __post_init__(self):
        if not (len(self.ids) == len(self.values) == len(self.species)):
            raise ValueError(f"ids ({len(self.ids)}), values ({len(self.values)}) and species "
                             f"({len(self.species)}) must have one entry per cell")

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def fingerprint(self) -> str:
        """sha256 of everything a model is fed from these cells, in order: each cell's token ids, float values and
        species code (one changed count changes a value or the rank order, hence the hash)."""
        import hashlib

        digest = hashlib.sha256(b"gc_lib.cell_tokens/1")
        digest.update(self.lengths().tobytes())
        for part, dtype in ((self.ids, np.int64), (self.values, np.float32)):
            joined = np.concatenate(part) if len(part) else np.zeros(0)
            digest.update(np.ascontiguousarray(joined, dtype=dtype).tobytes())
        digest.update(np.ascontiguousarray(self.species, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def token_counts(self, n_tokens: int) -> np.ndarray:
        """Per token id ``0 … n_tokens - 1``: how many of the cells hold it (within their window)."""
        ids = np.concatenate(self.ids) if len(self) else np.zeros(0, dtype=np.int64)
        return np.bincount(ids, minlength=n_tokens)

    def to_csr(self, n_tokens: int):
        """A cells × token ids sparse matrix of the values (0 where a cell does not hold a token): the expression
        the model is fed, e.g. for co-expression baselines on the same cells."""
        import scipy.sparse as sp

        lengths = self.lengths()
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        ids = np.concatenate(self.ids) if len(self) else np.zeros(0, dtype=np.int64)
        values = np.concatenate(self.values) if len(self) else np.zeros(0, dtype=np.float32)
        return sp.csr_matrix((values.astype(np.float32), ids, indptr), shape=(len(self), n_tokens))

    def head(self, max_genes: int) -> "CellTokens":
        """The same cells cut to their ``max_genes`` highest-ranked genes."""
        return CellTokens([x[:max_genes] for x in self.ids], [x[:max_genes] for x in self.values], self.species)

    def subset(self, index) -> "CellTokens":
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return CellTokens([self.ids[i] for i in index], [self.values[i] for i in index], self.species[index])

    @classmethod
    def from_adata(cls, adata: AnnData, tokenizer: Tokenizer, max_genes: int) -> tuple["CellTokens", dict]:
        """Tokenise a contract AnnData (either species, mixed allowed) exactly like the corpus, cells kept in
        ``adata`` order and cut to the ``max_genes`` highest-ranked genes. Also returns the gene overlap with
        the vocabulary per species; a species none of whose genes is a token is an error, not empty cells."""
        if "species" not in adata.obs:
            raise ValueError("adata.obs has no 'species' column (values: 'human' or 'mouse'); "
                             "see gc_lib.inputs.contract")
        ids: list = [None] * adata.n_obs
        values: list = [None] * adata.n_obs
        species_code = np.zeros(adata.n_obs, dtype=np.int64)
        overlap = {}
        labels = adata.obs["species"].astype(str).to_numpy()
        unknown = sorted(set(labels) - set(SPECIES))
        if unknown:
            raise ValueError(f"obs['species'] holds {unknown}; expected values among {list(SPECIES)}")
        for code, species in enumerate(SPECIES):
            where = np.flatnonzero(labels == species)
            if not len(where):
                continue
            coverage = tokenizer.coverage(adata.var_names, species)
            overlap[species] = coverage
            if coverage["in_vocabulary"] == 0:
                raise ValueError(f"none of the {coverage['genes']:,} genes of this AnnData is a {species} token of "
                                 f"the vocabulary; var_names must be Ensembl gene IDs of that species")
            table = tokenizer.tokenize(adata[where], dataset="cells")
            for row, cell_ids, cell_values in zip(table["row"].to_numpy(), table["input_ids"].to_pylist(),
                                                  table["values"].to_pylist()):
                ids[where[row]] = np.asarray(cell_ids[:max_genes], dtype=np.int64)
                values[where[row]] = np.asarray(cell_values[:max_genes], dtype=np.float32)
            species_code[where] = code
        return cls(ids, values, species_code), overlap

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, max_genes: int) -> "CellTokens":
        """Cells from a corpus table (:func:`gc_lib.corpus.builder.read_corpus`: ``input_ids``, ``values``,
        ``species``)."""
        missing = [c for c in ("input_ids", "values", "species") if c not in frame]
        if missing:
            raise ValueError(f"corpus table lacks columns {missing}")
        return cls([np.asarray(x[:max_genes], dtype=np.int64) for x in frame["input_ids"]],
                   [np.asarray(x[:max_genes], dtype=np.float32) for x in frame["values"]],
                   frame["species"].to_numpy().astype(np.int64))


def length_batches(lengths: np.ndarray, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                   pool: int = 50) -> list[np.ndarray]:
    """Batches of cell indices of similar length.

    Without ``shuffle``: all cells sorted by length, then cut (inference). With ``shuffle``: a random order, sorted
    by length within pools of ``pool`` batches, cut, and the batches shuffled — random batches that still pad
    little (training).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    lengths = np.asarray(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    step = batch_size * pool
    batches = []
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(cells: CellTokens, index, *, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad the cells at ``index`` into ``input_ids`` (B, L), float ``values`` (B, L), ``species`` (B,) and
    ``attention_mask`` (B, L); L is the longest of them (at least 1)."""
    index = np.asarray(index)
    length = max(1, max(len(cells.ids[i]) for i in index))
    input_ids = torch.full((len(index), length), pad_id, dtype=torch.long)
    values = torch.zeros(len(index), length, dtype=torch.float32)
    for row, i in enumerate(index):
        n = len(cells.ids[i])
        input_ids[row, :n] = torch.from_numpy(cells.ids[i])
        values[row, :n] = torch.from_numpy(cells.values[i])
    return {"input_ids": input_ids, "values": values, "species": torch.from_numpy(cells.species[index]),
            "attention_mask": input_ids != pad_id}


def add_by_token(total: torch.Tensor, states: torch.Tensor, inputs: dict[str, torch.Tensor]) -> None:
    """Add each real gene token's state in ``states`` (B, 1 + L, d; position 0 is the cell token) to the row of
    ``total`` (vocab_size, d) of its token id, for ``inputs`` from :func:`collate`: gene states summed by gene
    identity, never by position (the published code averaged positions); divided by :meth:`CellTokens.token_counts`
    they give each gene's mean state."""
    real = inputs["attention_mask"]
    total.index_add_(0, inputs["input_ids"][real], states[:, 1:][real].to(total.dtype))
