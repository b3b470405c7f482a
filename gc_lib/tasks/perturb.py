"""The in-silico perturbation engine: edit many cells' inputs at once and measure how the model's states move.

    result = perturb(model, cells, PerturbationSet.build(tf_ids, "overexpress"), high_values=high,
                     goal=centroid["beta"], alternatives={"alpha": centroid["alpha"]})
    result.cells    # one row per (cell, perturbation): cell_shift, toward_goal, toward_alpha, goal_score
    result.genes    # one row per (perturbation, gene): mean contextual shift of that gene over the cells

How it works, and why it is fast (``benchmarks/perturb_throughput.py`` measures it against a per-cell loop):

- cells stream in chunks of ``cell_chunk`` (memory is bounded by the chunk, never by the number of cells); each
  chunk's **unperturbed pass runs once** and every perturbation of its cells reuses it;
- the (cell, perturbation) pairs of a chunk fill batches of ``batch_size`` regardless of which cell they come from,
  built by tensor edits (:func:`gc_lib.tasks.perturb_edits.apply_edits`), not per-cell Python list surgery;
- a gene token's input vector (:class:`~gc_lib.model.architecture.GeneEmbedding`: id, value, priors) depends on that
  token alone, so each cell's are computed once and gathered into its edited copies; only perturbed genes are new;
- a ``delete`` or ``knockdown`` applies only to cells that express at least one of its genes (elsewhere it changes
  nothing); an ``overexpress`` applies to every cell — an unexpressed gene is inserted;
- under ``torchrun`` each rank takes every ``world_size``-th cell and the results are gathered on every rank.

What is measured, per (cell, perturbation):

- ``cell_shift``: 1 − cosine between the cell's embedding before and after. With ``pooling="mean"`` both embeddings
  average the cell token and the genes the two inputs **share** (the perturbed genes, and a gene cut at the length
  cap, left out of both), so a deleted or inserted gene's own state does not count as a shift;
- per gene of the cell other than the perturbed ones: 1 − cosine of its contextual state before and after, matched
  **by gene identity** (a deletion moves every later gene up one rank; the published code compared positions);
- with ``goal`` (and ``alternatives``): ``toward_goal`` = cos(after, goal) − cos(before, goal), one ``toward_<name>``
  per alternative, and ``goal_score`` = ``toward_goal`` minus the mean of the alternatives' (the shift toward the goal
  state and away from the others). Centroids come from :func:`state_centroids` on the same pooling.

Significance against random genes of matched expression lives in :mod:`gc_lib.tasks.perturb_stats`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..corpus.vocab import SPECIAL_TOKENS
from .cell_tokens import CellTokens, collate
from .embedding import POOLINGS, pool, stop_block
from .perturb_edits import KINDS, PerturbationSet, apply_edits


@dataclass
class PerturbResult:
    """What :func:`perturb` measured (see the module docstring for the columns)."""
    cells: pd.DataFrame                  # cell, perturbation, n_present, cell_shift[, toward_goal, …, goal_score]
    genes: pd.DataFrame                  # perturbation, token, mean_shift, n_cells
    embeddings: np.ndarray               # (n_cells, d) unperturbed cell embeddings, same pooling
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Targets:
    """Goal and alternative centroids as unit vectors, (1 + n_alternatives, d), goal first."""
    names: list[str]
    vectors: torch.Tensor


def state_centroids(embeddings: np.ndarray, labels, states) -> dict[str, np.ndarray]:
    """The mean embedding of the cells of each label in ``states`` (e.g. the goal and alternative cell types)."""
    labels = np.asarray(labels).astype(str)
    out = {}
    for state in states:
        chosen = labels == str(state)
        if not chosen.any():
            raise ValueError(f"no cell is labelled {state!r}; labels present: {sorted(set(labels))[:10]}")
        out[str(state)] = np.asarray(embeddings, dtype=np.float64)[chosen].mean(0)
    return out


def perturb(model, cells: CellTokens, perturbations: PerturbationSet, *, high_values: np.ndarray | None = None,
            pooling: str = "mean", goal: np.ndarray | None = None, alternatives: dict | None = None,
            gene_shifts: bool = True, batch_size: int = 64, cell_chunk: int = 64, max_genes: int | None = None,
            layer: int | None = None, device: str | torch.device | None = None,
            progress: bool = True) -> PerturbResult:
    """Apply every perturbation to every cell it applies to and measure the shifts (module docstring).

    ``model``: a :class:`~gc_lib.model.architecture.GeneCompass` (put in eval mode here); ``cells``: tokenised cells
    (:class:`~gc_lib.tasks.cell_tokens.CellTokens`); ``high_values``: per token id, the value an overexpressed gene
    takes (:func:`~gc_lib.tasks.perturb_edits.overexpression_values`; needed when any perturbation overexpresses);
    ``max_genes``: the length cap of an edited cell (default: the model's, ``max_len - 1``); ``layer``: measure the
    states after that many encoder blocks (:func:`~gc_lib.tasks.embedding.stop_block`; default the final states) —
    centroids must then come from the same layer (``encode_cells(…, layer=layer)``).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
    overexpresses = (perturbations.kind == KINDS.index("overexpress")).any()
    if overexpresses and high_values is None:
        raise ValueError("an overexpression needs high_values (gc_lib.tasks.perturb_edits.overexpression_values)")
    vocab_size = model.config.vocab_size
    genes = perturbations.genes[perturbations.genes >= 0]
    if len(genes) and (genes.max() >= vocab_size or genes.min() < len(SPECIAL_TOKENS)):
        raise ValueError(f"perturbation token ids must be gene tokens, in [{len(SPECIAL_TOKENS)}, {vocab_size}); "
                         f"got {genes.min()}..{genes.max()}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    stop = stop_block(model, layer)
    max_genes = min(max_genes or model.config.max_len - 1, model.config.max_len - 1)
    targets = _targets(goal, alternatives, device)
    high = torch.as_tensor(np.nan_to_num(high_values if high_values is not None else np.zeros(vocab_size)),
                           dtype=torch.float32, device=device)
    table = _PerturbationTensors(perturbations, high, device)

    rank, world = _rank_and_world()
    mine = np.arange(len(cells))[rank::world]
    mine = mine[np.argsort(cells.lengths()[mine], kind="stable")]          # similar lengths share a chunk
    rows, gene_parts = [], []
    embeddings = np.zeros((len(cells), model.config.d_model), dtype=np.float32)
    from tqdm.auto import tqdm

    chunks = [mine[i:i + cell_chunk] for i in range(0, len(mine), cell_chunk)]
    with torch.no_grad(), tqdm(total=len(chunks), desc="perturbing", disable=not progress or rank != 0) as bar:
        for chunk in chunks:
            chunk_rows, chunk_genes, base_embedding = _run_chunk(
                model, cells, chunk, table, targets, pooling=pooling, gene_shifts=gene_shifts,
                batch_size=batch_size, max_genes=max_genes, stop=stop, device=device)
            embeddings[chunk] = base_embedding
            rows.append(chunk_rows)
            gene_parts.append(chunk_genes)
            bar.update()
    rows, gene_parts, embeddings = _gather(rows, gene_parts, embeddings, world)
    cell_table = _cell_table(rows, perturbations, targets)
    params = {"pooling": pooling, "layer": layer or model.config.n_layers, "max_genes": max_genes,
              "batch_size": batch_size, "cell_chunk": cell_chunk, "n_cells": len(cells),
              "n_perturbations": len(perturbations), "world_size": world,
              "states": targets.names if targets else []}
    return PerturbResult(cell_table, _gene_table(gene_parts, perturbations), embeddings, params)


class _PerturbationTensors:
    """The perturbation table on the device, and the overexpression value of each of its genes."""

    def __init__(self, perturbations: PerturbationSet, high: torch.Tensor, device: torch.device):
        self.genes = torch.as_tensor(perturbations.genes, device=device)
        self.kind = torch.as_tensor(perturbations.kind, device=device)
        self.factor = torch.as_tensor(perturbations.factor, dtype=torch.float32, device=device)
        self.high = high[self.genes.clamp_min(0)]
        self.needs_presence = self.kind != KINDS.index("overexpress")


def _run_chunk(model, cells: CellTokens, chunk: np.ndarray, table: _PerturbationTensors, targets, *, pooling,
               gene_shifts, batch_size, max_genes, stop, device):
    """One chunk: the unperturbed pass, then every applicable (cell, perturbation) pair in full batches."""
    pad = model.config.pad_id
    base = {k: v.to(device) for k, v in collate(cells, chunk, pad_id=pad).items()}
    vectors = torch.cat([model.genes(base["input_ids"][i:i + batch_size], base["values"][i:i + batch_size])
                         for i in range(0, len(chunk), batch_size)])                      # (C, L, d): per token
    hidden = torch.cat([model.encode_from(model.assemble(vectors[i:i + batch_size], base["species"][i:i + batch_size]),
                                          base["attention_mask"][i:i + batch_size], stop_block=stop)
                        for i in range(0, len(chunk), batch_size)])                       # (C, 1 + L, d)
    base_embedding = pool(hidden, base["attention_mask"], pooling)
    holds = torch.zeros(len(chunk), model.config.vocab_size, dtype=torch.bool, device=device)
    holds.scatter_(1, base["input_ids"], True)                                            # (C, vocab): cell holds token
    present = holds[:, table.genes.clamp_min(0)] & (table.genes >= 0)                     # (C, P, K)
    applies = present.any(-1) | ~table.needs_presence                                     # (C, P)
    cell_of, pert_of = torch.nonzero(applies, as_tuple=True)
    rows, genes = [], []
    for start in range(0, len(cell_of), batch_size):
        c, p = cell_of[start:start + batch_size], pert_of[start:start + batch_size]
        edited = apply_edits(base["input_ids"][c], base["values"][c], table.genes[p], table.kind[p],
                             table.factor[p], table.high[p], max_genes, pad)
        after = _encode_edited(model, edited, vectors[c], table.genes[p], base["species"][c], pad, stop)
        moved_to = edited.moved_to
        shared = moved_to >= 0                                                             # (B, L)
        before_genes = hidden[c, 1:]
        after_genes = after[:, 1:].gather(1, moved_to.clamp_min(0).unsqueeze(-1).expand(-1, -1, after.shape[-1]))
        before = torch.cat([hidden[c, :1], before_genes], 1)
        moved = torch.cat([after[:, :1], after_genes], 1)
        e_before, e_after = pool(before, shared, pooling), pool(moved, shared, pooling)
        stats = [1 - F.cosine_similarity(e_before, e_after, dim=-1)]
        if targets is not None:
            toward = _unit(e_after) @ targets.vectors.T - _unit(e_before) @ targets.vectors.T  # (B, n_states)
            stats.extend(toward.T)
        n_present = present[c, p].sum(-1)
        rows.append(torch.stack([torch.as_tensor(chunk, device=device)[c].double(), p.double(),
                                 n_present.double(), *[s.double() for s in stats]], 1).cpu().numpy())
        if gene_shifts:
            shift = 1 - F.cosine_similarity(before_genes, after_genes, dim=-1)             # (B, L)
            tokens = base["input_ids"][c]
            keep = shared & (tokens != pad)
            genes.append(_sum_by_key(p.unsqueeze(1).expand_as(tokens)[keep], tokens[keep], shift[keep]))
    width = 3 + 1 + (len(targets.names) if targets is not None else 0)
    chunk_rows = np.concatenate(rows) if rows else np.zeros((0, width))
    chunk_genes = pd.concat(genes).groupby(["perturbation", "token"]).sum() if genes else None
    return chunk_rows, chunk_genes, base_embedding.float().cpu().numpy()


def _encode_edited(model, edited, base_vectors: torch.Tensor, genes: torch.Tensor, species: torch.Tensor,
                   pad: int, stop: int | None = None) -> torch.Tensor:
    """Hidden states of edited cells. A gene token's input vector depends on its id and value alone, so the
    unperturbed cells' vectors are reused and only the perturbed genes' are computed — the same numbers as
    ``model.encode(edited.ids, edited.values, …)`` with less work."""
    slots = model.genes(genes.clamp_min(0), edited.slot_values)                           # (B, K, d)
    rows = torch.cat([base_vectors, slots], 1)                                            # (B, L + K, d)
    vectors = rows.gather(1, edited.source.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))
    return model.encode_from(model.assemble(vectors, species), edited.ids != pad, stop_block=stop)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.double(), dim=-1)


def _targets(goal, alternatives, device) -> _Targets | None:
    if goal is None:
        if alternatives:
            raise ValueError("alternatives need a goal state")
        return None
    names = ["goal", *(alternatives or {})]
    vectors = [np.asarray(v, dtype=np.float64) for v in [goal, *(alternatives or {}).values()]]
    return _Targets(names, _unit(torch.as_tensor(np.stack(vectors), device=device)))


def _sum_by_key(perturbation: torch.Tensor, token: torch.Tensor, shift: torch.Tensor) -> pd.DataFrame:
    """Per (perturbation, token): the summed shift and the number of cells, of one batch."""
    frame = pd.DataFrame({"perturbation": perturbation.cpu().numpy(), "token": token.cpu().numpy(),
                          "shift_sum": shift.double().cpu().numpy(), "n_cells": 1})
    return frame.groupby(["perturbation", "token"], sort=False).sum()


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(rows: list, gene_parts: list, embeddings: np.ndarray, world: int):
    """Every rank's rows, gene sums and base embeddings, on every rank (``all_gather_object``)."""
    gene_parts = [g for g in gene_parts if g is not None]
    if world == 1:
        return rows, gene_parts, embeddings
    import torch.distributed as dist

    gathered = [None] * world
    dist.all_gather_object(gathered, (rows, gene_parts, embeddings))
    rows = [r for part in gathered for r in part[0]]
    gene_parts = [g for part in gathered for g in part[1]]
    return rows, gene_parts, np.sum([part[2] for part in gathered], axis=0)  # each rank filled only its cells


def _cell_table(rows: list, perturbations: PerturbationSet, targets) -> pd.DataFrame:
    stats = ["cell_shift"] + ([f"toward_{n}" for n in targets.names] if targets is not None else [])
    data = np.concatenate(rows) if rows else np.zeros((0, 3 + len(stats)))
    frame = pd.DataFrame(data, columns=["cell", "perturbation", "n_present", *stats])
    frame = frame.astype({"cell": np.int64, "perturbation": np.int64, "n_present": np.int64})
    if targets is not None:
        alternatives = [f"toward_{n}" for n in targets.names[1:]]
        frame["goal_score"] = frame["toward_goal"] - (frame[alternatives].mean(1) if alternatives else 0.0)
    frame.insert(2, "name", np.asarray(perturbations.names, dtype=object)[frame["perturbation"]]
                 if len(frame) else pd.Series(dtype=object))
    return frame.sort_values(["perturbation", "cell"], kind="stable").reset_index(drop=True)


def _gene_table(parts: list, perturbations: PerturbationSet) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=["perturbation", "name", "token", "mean_shift", "n_cells"])
    total = pd.concat(parts).groupby(level=["perturbation", "token"]).sum().reset_index()
    total["mean_shift"] = total["shift_sum"] / total["n_cells"]
    total.insert(1, "name", np.asarray(perturbations.names, dtype=object)[total["perturbation"]])
    return total[["perturbation", "name", "token", "mean_shift", "n_cells"]].sort_values(
        ["perturbation", "mean_shift"], ascending=[True, False], kind="stable").reset_index(drop=True)
