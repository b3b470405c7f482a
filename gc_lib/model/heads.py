"""A cell-level pretraining head: gene expression prediction from the cell embedding (GEPC, after scGPT's MVC).

The masked-gene objective (:class:`gc_lib.model.architecture.GeneCompass`) puts its loss on gene positions only:
the cell (species) token's final state is read by nothing, so nothing trains it, and as a frozen embedding it
mostly encodes how many genes a cell expresses (notebook 03 measures this). GEPC gives the cell token a loss of
its own: each masked gene's value is predicted from the cell token's final state and the gene's *identity* alone,
never from the gene's position (its rank) or its context, so the only way to predict it is for the cell token to
summarise the cell's expression profile::

    query_g   = MLP(LayerNorm(id_embedding[g]))       (d,)   what the head asks about gene g
    value_hat = (W · query_g) · cell / √d + b         a bilinear form of gene and cell (scGPT's "inner product");
                                                      √d keeps its initial scale the same for every model width

The loss is the MSE to the true (hidden) value at masked positions, added to the MLM loss with
``ModelConfig.gepc_loss_weight`` (0: off, the head is not even built, so older checkpoints load unchanged).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GEPCHead(nn.Module):
    """value_hat(cell, gene) = (W · MLP(LayerNorm(gene_embedding))) · cell / √d + b; see the module docstring.

    PyTorch's default initialisation, not the encoder's N(0, 0.02): the LayerNorm lifts the id embeddings (std
    0.02) to unit scale so the product of the head's matrices starts away from zero and learns from step one."""

    def __init__(self, d_model: int):
        super().__init__()
        self.scale = d_model ** -0.5
        self.query = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU(),
                                   nn.Linear(d_model, d_model))
        self.bilinear = nn.Linear(d_model, d_model, bias=False)
        self.bias = nn.Parameter(torch.zeros(1))        # not a 0-d scalar: FSDP's fully_shard refuses those

    def forward(self, cell: torch.Tensor, gene: torch.Tensor) -> torch.Tensor:
        """Predicted values (n,) for ``n`` (cell state, gene identity embedding) pairs, both (n, d_model)."""
        return (self.bilinear(self.query(gene)) * cell).sum(-1) * self.scale + self.bias


def gepc_loss(head: GEPCHead, hidden: torch.Tensor, gene_embedding: nn.Embedding, masked: torch.Tensor,
              labels: torch.Tensor, value_labels: torch.Tensor) -> torch.Tensor:
    """MSE of ``head``'s value predictions at the masked positions of a batch.

    ``hidden`` (B, 1 + L, d): the encoder's output, position 0 the cell token; ``labels`` (B, L): the true gene ids
    (read at masked positions, where the input may show ``<mask>`` or a random gene instead)."""
    rows = masked.nonzero(as_tuple=True)[0]                            # the cell of each masked position
    predicted = head(hidden[rows, 0], gene_embedding(labels[masked]))
    return F.mse_loss(predicted.float(), value_labels[masked].float())
