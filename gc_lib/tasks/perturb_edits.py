"""In-silico perturbations as token edits: what a deleted, overexpressed or knocked-down gene does to a cell's input.

A cell enters the model as its genes in rank order (highest normalised value first) with their values
(:mod:`gc_lib.corpus.tokenizer`). A perturbation of one gene or a combination of genes edits that input:

- ``delete``: the genes leave the cell; every later gene moves up one rank (as in Geneformer's deletion).
- ``overexpress``: the genes move to the top ranks, in the order given, with the value
  ``max(high_values[gene], the cell's highest remaining value)`` — ``high_values`` is a high quantile of that
  gene's values over reference cells (:func:`overexpression_values`), and the maximum keeps the values descending
  so the edited cell looks like a cell the model has seen. A gene the cell does not express is **inserted** there:
  the published perturbers dropped every such cell, so they could not ask what switching a gene *on* does. At the
  length cap the cell's lowest-ranked gene drops out.
  A gene can be inserted only if it is a token: a corpus built with ``extra_genes``
  (:func:`gc_lib.inputs.genes.tf_tokens`; notebook 01 does this for every TF and its mouse ortholog) holds genes that
  no cell expresses. Such a gene is represented by its priors (GRN, promoter, family, co-expression, where it has
  them) and an ID embedding that pretraining never fitted to a cell (it only ever appears as a wrong answer of the
  masked-gene head), so what an insertion does comes from its priors and its value.
- ``knockdown``: each expressed gene's value is multiplied by ``factor`` and the gene moves down to the rank its
  new value takes (ahead of genes of equal value). Unexpressed genes are untouched.

:func:`apply_edits` does this for a batch of (cell, perturbation) pairs at once with tensor operations: each token
gets a sort key (its old rank, or the rank its new value earns), one stable sort per row orders the edited cell,
and the inverse permutation says where every original gene went — which the engine needs to compare each gene's
state before and after by gene identity, never by position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from ..corpus.vocab import SPECIAL_TOKENS

KINDS: tuple[str, ...] = ("delete", "overexpress", "knockdown")


@dataclass(frozen=True)
class PerturbationSet:
    """Perturbations, each a kind applied to one gene or a combination of genes (token ids).

    ``genes`` (P, K) holds each perturbation's token ids, padded with -1; ``kind`` (P,) indexes :data:`KINDS`;
    ``factor`` (P,) scales values for ``knockdown``; ``names`` labels each perturbation in result tables.
    """
    genes: np.ndarray
    kind: np.ndarray
    factor: np.ndarray
    names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.genes.ndim != 2 or not (len(self.genes) == len(self.kind) == len(self.factor) == len(self.names)):
            raise ValueError("genes (P, K), kind (P,), factor (P,) and names must describe the same perturbations")
        if len(self.genes) and (self.genes[:, 0] < 0).any():
            raise ValueError("every perturbation needs at least one gene")

    def __len__(self) -> int:
        return len(self.genes)

    @classmethod
    def build(cls, genes, kind: str = "delete", *, factor: float = 0.5, names=None) -> "PerturbationSet":
        """From a list of token ids (one gene per perturbation) or of lists of token ids (combinations).

        ``kind`` is one of :data:`KINDS` for all of them; ``factor`` is the knock-down's value multiplier, in
        (0, 1). ``names`` default to the token ids joined by ``+``. Use :meth:`concat` to mix kinds.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
        if kind == "knockdown" and not 0 < factor < 1:
            raise ValueError(f"a knock-down factor lies in (0, 1); got {factor}")
        combos = [[int(g)] if np.isscalar(g) else [int(x) for x in g] for g in genes]
        if any(len(c) == 0 for c in combos) or any(len(set(c)) != len(c) for c in combos):
            raise ValueError("each perturbation needs one or more distinct genes")
        width = max((len(c) for c in combos), default=1)
        table = np.full((len(combos), width), -1, dtype=np.int64)
        for row, combo in enumerate(combos):
            table[row, :len(combo)] = combo
        if (table[table >= 0] < 0).any():
            raise ValueError("token ids must be non-negative")
        names = list(names) if names is not None else ["+".join(map(str, c)) for c in combos]
        code = KINDS.index(kind)
        return cls(table, np.full(len(combos), code, dtype=np.int64), np.full(len(combos), float(factor)), names)

    @classmethod
    def concat(cls, parts: list["PerturbationSet"]) -> "PerturbationSet":
        width = max(p.genes.shape[1] for p in parts)
        genes = np.concatenate([np.pad(p.genes, ((0, 0), (0, width - p.genes.shape[1])), constant_values=-1)
                                for p in parts])
        return cls(genes, np.concatenate([p.kind for p in parts]), np.concatenate([p.factor for p in parts]),
                   [n for p in parts for n in p.names])

    def kind_names(self) -> list[str]:
        return [KINDS[k] for k in self.kind]


def overexpression_values(ids: list[np.ndarray], values: list[np.ndarray], vocab_size: int, *,
                          quantile: float = 0.99) -> np.ndarray:
    """Per token id: the ``quantile`` of its values over the given cells (ragged token ids and values).

    A token that none of the cells holds (e.g. a TF no reference cell expresses) gets the median of the other
    tokens' quantiles: without data on that gene, a typical high value. Special tokens are NaN.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must lie in (0, 1]; got {quantile}")
    flat_ids = np.concatenate(ids) if len(ids) else np.zeros(0, dtype=np.int64)
    flat_values = np.concatenate(values).astype(np.float64) if len(values) else np.zeros(0)
    if not len(flat_ids):
        raise ValueError("no tokens in the reference cells: cannot set overexpression values")
    order = np.lexsort((flat_values, flat_ids))                    # by token, then value
    flat_ids, flat_values = flat_ids[order], flat_values[order]
    tokens, start, count = np.unique(flat_ids, return_index=True, return_counts=True)
    at = start + np.floor(quantile * (count - 1)).astype(np.int64)  # the lower order statistic at the quantile
    high = np.full(vocab_size, np.nan)
    high[tokens] = flat_values[at]
    fallback = float(np.median(high[tokens]))
    out = np.where(np.isnan(high), fallback, high)
    out[:len(SPECIAL_TOKENS)] = np.nan
    return out


class Edited(NamedTuple):
    """Edited cells (B, L'): ``ids``, ``values``; ``moved_to`` (B, L): the new position of every original token, -1
    where it left the cell (deleted, re-inserted or cut at the cap); ``source`` (B, L'): where each new position
    came from — ``j < L`` the original position ``j``, ``L + k`` the perturbation's ``k``-th gene with value
    ``slot_values[:, k]`` (B, K)."""
    ids: torch.Tensor
    values: torch.Tensor
    moved_to: torch.Tensor
    source: torch.Tensor
    slot_values: torch.Tensor


def apply_edits(ids: torch.Tensor, values: torch.Tensor, genes: torch.Tensor, kind: torch.Tensor,
                factor: torch.Tensor, high: torch.Tensor, max_genes: int, pad_id: int = 0) -> Edited:
    """Edit B cells at once. ``ids``/``values`` (B, L): the cells, padded with ``pad_id``; ``genes`` (B, K): each
    row's perturbed token ids (-1 padding); ``kind`` (B,) and ``factor`` (B,); ``high`` (B, K): overexpression
    values of ``genes``. Returns :class:`Edited`."""
    B, L = ids.shape
    K = genes.shape[1]
    real = ids != pad_id
    is_target = (ids.unsqueeze(-1) == genes.unsqueeze(1)) & (genes.unsqueeze(1) >= 0)   # (B, L, K)
    hit = is_target.any(-1) & real                                                     # (B, L)
    present = is_target.any(1) & (genes >= 0)                                          # (B, K): gene in the cell
    value_of = (values.unsqueeze(-1) * is_target).sum(1)                               # (B, K): its value, else 0
    position = torch.arange(L, device=ids.device, dtype=values.dtype).expand(B, L)
    big = torch.tensor(float("inf"), dtype=values.dtype, device=ids.device)
    base_key = torch.where(real & ~hit, position, big)                                 # kept genes keep their order

    over = (kind == KINDS.index("overexpress")).unsqueeze(1)
    down = (kind == KINDS.index("knockdown")).unsqueeze(1)
    remaining = torch.where(real & ~hit, values, torch.full_like(values, -big))
    top = remaining.max(1).values.clamp_min(0).unsqueeze(1)                            # (B, 1)
    over_value = torch.maximum(high.to(values.dtype), top)
    down_value = value_of * factor.to(values.dtype).unsqueeze(1)
    new_value = torch.where(over, over_value, down_value)                               # (B, K)
    slot = torch.arange(K, device=ids.device, dtype=values.dtype)
    # knock-down: the first kept position whose value is <= the new value, minus a half (ahead of equal values)
    at_or_below = (values.unsqueeze(1) <= new_value.unsqueeze(-1)) & (real & ~hit).unsqueeze(1)   # (B, K, L)
    first = torch.where(at_or_below.any(-1), at_or_below.int().argmax(-1).to(values.dtype),
                        torch.full_like(new_value, float(L)))
    down_key = first - 0.5 + slot * 1e-3 / max(K, 1)
    over_key = slot - K
    new_key = torch.where(over & (genes >= 0), over_key, torch.where(down & present, down_key, big))
    keys = torch.cat([base_key, new_key], dim=1)                                       # (B, L + K)
    all_ids = torch.cat([ids, genes.clamp_min(0)], dim=1)
    all_values = torch.cat([values, new_value], dim=1)
    order = torch.sort(keys, dim=1, stable=True).indices
    n_kept = torch.isfinite(keys).sum(1).clamp_max(max_genes)                          # (B,)
    width = max(int(n_kept.max()), 1)
    order = order[:, :width]
    keep = torch.arange(width, device=ids.device).unsqueeze(0) < n_kept.unsqueeze(1)
    new_ids = torch.where(keep, all_ids.gather(1, order), torch.full_like(order, pad_id))
    new_values = torch.where(keep, all_values.gather(1, order), torch.zeros_like(order, dtype=values.dtype))
    moved_to = torch.full((B, L + K), -1, dtype=torch.long, device=ids.device)
    moved_to.scatter_(1, order, torch.where(keep, torch.arange(width, device=ids.device).expand(B, width), -1))
    return Edited(new_ids, new_values, moved_to[:, :L], order, new_value)
