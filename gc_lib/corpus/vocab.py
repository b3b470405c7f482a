"""The token vocabulary: special tokens, then human and mouse genes as separate tokens (DESIGN.md §1).

Token ids: ``<pad>`` 0, ``<mask>`` 1, one token per species (``<human>`` 2, ``<mouse>`` 3; the model
prepends it as the cell token), then genes: human Ensembl IDs sorted, then mouse Ensembl IDs sorted.
Each mouse gene carries its human ortholog (one-to-one first, see :func:`gc_lib.inputs.genes.mouse_to_human`)
for the prior-knowledge lookups. Stored as ``vocab.json``: columnar lists, no pickles; its hash
(:attr:`Vocabulary.hash`) is recorded with every corpus and checkpoint that uses it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_json
from ..inputs.contract import SPECIES, strip_version

PAD, MASK = "<pad>", "<mask>"
SPECIES_TOKENS: dict[str, str] = {s: f"<{s}>" for s in SPECIES}
SPECIAL_TOKENS: tuple[str, ...] = (PAD, MASK, *SPECIES_TOKENS.values())
FORMAT = "gc_lib.vocab/1"


@dataclass(frozen=True)
class Vocabulary:
    """Ordered tokens with the species, symbol and human ortholog of each gene token.

    ``genes`` is a DataFrame indexed by token id (from ``len(SPECIAL_TOKENS)``) with columns
    ``gene_id, species, symbol, human_ortholog, homology_type`` (the last two empty for human genes).
    """
    genes: pd.DataFrame
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {g: i for i, g in zip(self.genes.index, self.genes["gene_id"])})

    @property
    def tokens(self) -> list[str]:
        return [*SPECIAL_TOKENS, *self.genes["gene_id"]]

    def __len__(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.genes)

    @property
    def pad_id(self) -> int:
        return SPECIAL_TOKENS.index(PAD)

    @property
    def mask_id(self) -> int:
        return SPECIAL_TOKENS.index(MASK)

    def species_token_id(self, species: str) -> int:
        if species not in SPECIES_TOKENS:
            raise ValueError(f"unknown species {species!r}; expected one of {SPECIES}")
        return SPECIAL_TOKENS.index(SPECIES_TOKENS[species])

    @property
    def hash(self) -> str:
        """sha256 of the ordered token list and each gene's species: equal hashes, identical token ids."""
        payload = json.dumps([self.tokens, list(self.genes["species"])], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def encode(self, gene_ids) -> np.ndarray:
        """Token id of each Ensembl ID (version suffix ignored); -1 for a gene not in the vocabulary."""
        return np.array([self._index.get(g, -1) for g in strip_version(gene_ids)], dtype=np.int32)

    def decode(self, token_ids, *, symbols: bool = True) -> list[str]:
        """Gene symbols (or Ensembl IDs with ``symbols=False``) of token ids; special tokens by name."""
        column = self.genes["symbol" if symbols else "gene_id"]
        n_special = len(SPECIAL_TOKENS)
        ids = np.asarray(token_ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"token ids must lie in [0, {len(self)}); got {ids.min()}..{ids.max()} "
                             f"(-1 marks a gene that encode() did not find)")
        return [SPECIAL_TOKENS[t] if t < n_special else column.at[t] for t in np.asarray(token_ids).tolist()]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``vocab.json`` atomically."""
        g = self.genes.astype(object).where(self.genes.notna(), None)
        return write_json({"format": FORMAT, "special_tokens": list(SPECIAL_TOKENS), "hash": self.hash,
                           **{c: list(g[c]) for c in _COLUMNS}}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a ``vocab.json``; a clear error for another format or a corrupted file (hash mismatch)."""
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != FORMAT or tuple(doc.get("special_tokens", ())) != SPECIAL_TOKENS:
            raise ValueError(f"{path} is not a {FORMAT} vocabulary (format {doc.get('format')!r})")
        genes = pd.DataFrame({c: doc[c] for c in _COLUMNS})
        genes.index = pd.RangeIndex(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + len(genes))
        vocab = cls(genes)
        if vocab.hash != doc.get("hash"):
            raise ValueError(f"{path}: the stored hash does not match its tokens; the file is corrupted")
        return vocab


_COLUMNS = ("gene_id", "species", "symbol", "human_ortholog", "homology_type")


def build_vocabulary(genes: pd.DataFrame, orthologs: pd.DataFrame | None = None) -> Vocabulary:
    """A vocabulary of the given genes.

    ``genes``: columns ``gene_id`` (Ensembl, version suffix ignored), ``species``, ``symbol``; duplicates of a
    gene keep their first symbol. ``orthologs``: columns ``mouse_id, human_id, homology_type`` (one human
    partner per mouse gene, e.g. :func:`gc_lib.inputs.genes.mouse_to_human`); mouse genes without one get none.
    """
    missing = {"gene_id", "species", "symbol"} - set(genes.columns)
    if missing:
        raise ValueError(f"gene table lacks columns {sorted(missing)}")
    table = genes[["gene_id", "species", "symbol"]].copy()
    table["gene_id"] = strip_version(table["gene_id"])
    unknown = sorted(set(table["species"]) - set(SPECIES))
    if unknown:
        raise ValueError(f"unknown species {unknown}; expected one of {SPECIES}")
    table = table.drop_duplicates("gene_id")
    table["order"] = table["species"].map({s: i for i, s in enumerate(SPECIES)})
    table = table.sort_values(["order", "gene_id"]).drop(columns="order").reset_index(drop=True)
    if orthologs is not None and len(orthologs):
        partner = orthologs.assign(mouse_id=strip_version(orthologs["mouse_id"]),
                                   human_id=strip_version(orthologs["human_id"]))
        partner = partner.drop_duplicates("mouse_id").set_index("mouse_id")
        is_mouse = table["species"] == "mouse"
        table["human_ortholog"] = table["gene_id"].map(partner["human_id"]).where(is_mouse)
        table["homology_type"] = table["gene_id"].map(partner["homology_type"]).where(is_mouse)
    else:
        table["human_ortholog"] = None
        table["homology_type"] = None
    table.index = pd.RangeIndex(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + len(table))
    return Vocabulary(table)
