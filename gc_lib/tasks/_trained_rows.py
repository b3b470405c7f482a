"""Fine-tuning's gene-ID embedding with only its reachable rows trained: the same updates as dense AdamW, less work.

The model's gene-ID embedding holds a row for every token of the vocabulary (34,046 × 128 on ``local``), but a
fine-tuning run only ever looks up the tokens of its training cells — a few thousand rows. PyTorch still hands AdamW a
dense gradient the size of the whole table every step, so zeroing it, clipping it and the optimizer's passes over it
cost as much as the encoder's matrix products (``benchmarks/finetune_optimizer.py``). :class:`TrainedRows` stands in
for the embedding during training: the reachable rows — every token of the training cells and their species tokens,
padding excepted — are one small parameter; the other rows stay fixed, and the decoupled weight decay that dense AdamW
would still apply to them every step (``p ← p·(1 − lr·wd)``: their gradient is zero, their moments stay zero) is
kept as one running factor. AdamW is element-wise, so the reachable rows get exactly the dense run's updates, and
:meth:`TrainedRows.restore` writes both parts back into the ordinary embedding (equal up to floating-point order).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TrainedRows(nn.Module):
    """The rows ``rows`` of ``embedding`` as a parameter; the others fixed, scaled by the weight decay so far."""

    def __init__(self, embedding: nn.Embedding, rows: torch.Tensor):
        super().__init__()
        self.embedding = embedding.requires_grad_(False)
        self.register_buffer("rows", rows)
        slot = torch.full((embedding.num_embeddings,), -1, dtype=torch.long, device=rows.device)
        slot[rows] = torch.arange(len(rows), device=rows.device)
        self.register_buffer("slot", slot)
        self.register_buffer("decay", torch.ones((), device=rows.device))
        self.trained = nn.Parameter(embedding.weight.detach()[rows].clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        slot = self.slot[ids]
        fixed = F.embedding(ids, self.embedding.weight) * self.decay
        reached = F.embedding(slot.clamp(min=0), self.trained)
        return torch.where((slot >= 0).unsqueeze(-1), reached, fixed)

    def group_in(self, optimizer: torch.optim.Optimizer) -> dict:
        """The ``optimizer`` parameter group that updates the trained rows (its lr and weight decay drive
        :meth:`decay_fixed_rows`)."""
        return next(g for g in optimizer.param_groups if any(p is self.trained for p in g["params"]))

    @torch.no_grad()
    def decay_fixed_rows(self, lr: float, weight_decay: float) -> None:
        """What one AdamW step does to the fixed rows: call after each optimizer step, with that step's lr."""
        self.decay.mul_(1.0 - lr * weight_decay)

    @torch.no_grad()
    def restore(self) -> nn.Embedding:
        """The ordinary embedding holding the trained rows and the decayed fixed ones (gradients back on)."""
        weight = self.embedding.weight
        weight.mul_(self.decay)
        weight[self.rows] = self.trained
        return self.embedding.requires_grad_(True)


def reachable_rows(token_ids: list[np.ndarray], species: np.ndarray, first_species_id: int,
                   pad_id: int) -> torch.Tensor:
    """The embedding rows a fine-tuning run can update: every gene token of the training cells and their cells'
    species tokens, without padding (whose gradient the embedding zeroes), sorted."""
    genes = np.concatenate(token_ids) if len(token_ids) else np.zeros(0, dtype=np.int64)
    rows = np.union1d(genes.astype(np.int64), np.unique(species).astype(np.int64) + first_species_id)
    return torch.from_numpy(rows[rows != pad_id])


def attach(encoder, rows: torch.Tensor) -> TrainedRows | None:
    """Swap ``encoder.genes.ids`` for a :class:`TrainedRows` over ``rows`` when that embedding trains (None, and
    nothing changed, when it is frozen). Undo with :func:`detach`."""
    embedding = encoder.genes.ids
    if not embedding.weight.requires_grad:
        return None
    encoder.genes.ids = TrainedRows(embedding, rows.to(embedding.weight.device))
    return encoder.genes.ids


def detach(encoder) -> None:
    """Put the ordinary embedding back into ``encoder.genes.ids``, holding what :class:`TrainedRows` trained."""
    if isinstance(encoder.genes.ids, TrainedRows):
        encoder.genes.ids = encoder.genes.ids.restore()
