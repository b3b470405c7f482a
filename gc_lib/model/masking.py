"""Masked-gene pretraining batches: pad a list of cells and apply BERT masking (DESIGN.md §2).

The collator turns the cells of one :class:`CellBatch` (as yielded by :class:`gc_lib.model.data_loader.PretrainDataset`)
into a dict of tensors::

    input_ids       (B, L) long     gene token ids after masking; <pad> (0) past each cell's length
    values          (B, L) float32  expression values after masking: 0.0 at masked positions and pads
    species         (B,)   long     0 human, 1 mouse (the model prepends the species token itself)
    attention_mask  (B, L) bool     True on real tokens
    labels          (B, L) long     the original gene id at masked positions, -100 elsewhere
    value_labels    (B, L) float32  the original values (to be read at masked positions only)
    masked          (B, L) bool     positions selected for prediction

BERT masking: each real token is selected with probability ``mask_probability`` (at least one per cell);
of the selected, ``mask_token_fraction`` become ``<mask>``, ``random_token_fraction`` a gene token drawn
uniformly (never a special token) and the rest stay unchanged. Every selected position has its value hidden,
including the unchanged ones, so the value head cannot copy its input.

The randomness comes from a ``torch.Generator`` seeded from ``(seed, epoch, batch index)``, never from global
state, so a batch replayed after a resume, in another worker process or on another machine is masked identically.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..corpus.vocab import MASK, PAD, SPECIAL_TOKENS

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index


@dataclass(frozen=True)
class CellBatch:
    """The cells of one batch and where it sits in the epoch (what seeds its masking).

    Each cell is a dict with ``input_ids`` (int32 array), ``values`` (float32 array, same length), ``species``
    (int), and, from the corpus, ``dataset`` (str) and ``row`` (int) to trace it back to its source.
    ``index`` is unique among all batches of the epoch over all ranks and workers.
    """
    cells: list[dict]
    epoch: int
    index: int


def masking_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``(seed, epoch, index)`` (well mixed by ``SeedSequence``)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def pad_cells(cells: Sequence[dict], pad_id: int = SPECIAL_TOKENS.index(PAD)) -> dict[str, torch.Tensor]:
    """``input_ids``, ``values``, ``species`` and ``attention_mask`` of cells padded to the longest one."""
    lengths = np.array([len(c["input_ids"]) for c in cells], dtype=np.int64)
    width = int(lengths.max(initial=0))
    ids = np.full((len(cells), width), pad_id, dtype=np.int64)
    values = np.zeros((len(cells), width), dtype=np.float32)
    for i, cell in enumerate(cells):
        ids[i, :lengths[i]] = cell["input_ids"]
        values[i, :lengths[i]] = cell["values"]
    return {"input_ids": torch.from_numpy(ids), "values": torch.from_numpy(values),
            "species": torch.tensor([int(c["species"]) for c in cells], dtype=torch.long),
            "attention_mask": torch.arange(width)[None, :] < torch.from_numpy(lengths)[:, None]}


@dataclass(frozen=True)
class MaskingCollator:
    """Pads and masks a :class:`CellBatch` (``__call__``) or a list of cells with a given generator (``collate``)."""
    vocab_size: int                    # len(Vocabulary): random replacements are drawn from [first_gene_id, vocab_size)
    seed: int = 0
    mask_probability: float = 0.15
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.1
    pad_id: int = SPECIAL_TOKENS.index(PAD)
    mask_id: int = SPECIAL_TOKENS.index(MASK)
    first_gene_id: int = len(SPECIAL_TOKENS)

    def __post_init__(self):
        if self.vocab_size <= self.first_gene_id:
            raise ValueError(f"vocab_size {self.vocab_size} holds no gene token (genes start at {self.first_gene_id})")
        if not 0 < self.mask_probability <= 1:
            raise ValueError(f"mask_probability must lie in (0, 1]; got {self.mask_probability}")
        if min(self.mask_token_fraction, self.random_token_fraction) < 0 or \
                self.mask_token_fraction + self.random_token_fraction > 1:
            raise ValueError("mask_token_fraction and random_token_fraction must be >= 0 and sum to at most 1")

    def __call__(self, batch: CellBatch) -> dict[str, torch.Tensor]:
        return self.collate(batch.cells, masking_generator(self.seed, batch.epoch, batch.index))

    def collate(self, cells: Sequence[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Pad ``cells`` and mask them with random draws from ``generator`` only (see the module docstring)."""
        out = pad_cells(cells, self.pad_id)
        ids, values, real = out["input_ids"], out["values"], out["attention_mask"]
        shape = ids.shape
        # every draw is made for the whole (B, L) grid, in a fixed order, so results depend on nothing but the seed
        selected = (torch.rand(shape, generator=generator) < self.mask_probability) & real
        forced = (torch.rand(shape[0], generator=generator) * real.sum(1)).long()
        action = torch.rand(shape, generator=generator)
        replacement = torch.randint(self.first_gene_id, self.vocab_size, shape, generator=generator)

        # a cell with nothing selected gets one uniformly chosen token, so every cell contributes to the loss
        empty = ~selected.any(1) & real.any(1)
        selected[empty.nonzero().squeeze(1), forced[empty]] = True

        to_mask = selected & (action < self.mask_token_fraction)
        to_random = selected & ~to_mask & (action < self.mask_token_fraction + self.random_token_fraction)
        out["labels"] = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
        out["value_labels"] = values.clone()
        out["input_ids"] = torch.where(to_mask, self.mask_id, torch.where(to_random, replacement, ids))
        out["values"] = values.masked_fill(selected, 0.0)
        out["masked"] = selected
        return out
