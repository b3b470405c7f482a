"""The per-cell perturbation loop in the style of the published perturbers: the engine's reference and benchmark peer.

Geneformer's ``InSilicoPerturber`` (and GeneCompass's port of it) take one cell at a time: its perturbed copies
are built as Python lists, run through the model in mini-batches of that cell's perturbations, and each
perturbation's gene shifts are gathered into a dictionary gene by gene. This module does exactly that, with the
same edit rules and the same measurements as :func:`gc_lib.tasks.perturb.perturb`, so that

- the tests check that the engine's vectorised edits and cross-cell batches give the loop's outputs;
- ``benchmarks/perturb_throughput.py`` measures what the engine's design is worth on the same model and cells.

It is not meant for real screens: use :func:`~gc_lib.tasks.perturb.perturb`.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .cell_tokens import CellTokens
from .embedding import pool
from .perturb import PerturbResult, _cell_table, _gene_table, _targets, _unit
from .perturb_edits import PerturbationSet


def edit_cell(ids: list[int], values: list[float], genes: list[int], kind: str, factor: float,
              high: dict[int, float], max_genes: int) -> tuple[list[int], list[float], dict[int, int]]:
    """One cell's perturbed copy as Python lists, and where each original position went (dropped ones absent)."""
    chosen = set(genes)
    keyed = [(float(j), t, v, j) for j, (t, v) in enumerate(zip(ids, values)) if t not in chosen]
    if kind == "overexpress":
        top = max([v for _, _, v, _ in keyed], default=0.0)
        top = max(top, 0.0)
        keyed += [(float(k - len(genes)), g, max(float(np.float32(high[g])), top), None) for k, g in enumerate(genes)]
    elif kind == "knockdown":
        for k, g in enumerate(genes):
            if g in ids:
                new = float(np.float32(values[ids.index(g)]) * np.float32(factor))
                first = next((j for _, t, v, j in keyed if j is not None and v <= new), len(ids))
                keyed.append((first - 0.5 + k * 1e-3 / len(genes), g, new, None))
    keyed.sort(key=lambda item: item[0])
    keyed = keyed[:max_genes]
    moved = {j: position for position, (_, _, _, j) in enumerate(keyed) if j is not None}
    return [t for _, t, _, _ in keyed], [v for _, _, v, _ in keyed], moved


def perturb_loop(model, cells: CellTokens, perturbations: PerturbationSet, *, high_values: np.ndarray | None = None,
                 pooling: str = "mean", goal=None, alternatives=None, forward_batch_size: int = 64,
                 max_genes: int | None = None, device: str | torch.device = "cpu") -> PerturbResult:
    """The same measurements as :func:`gc_lib.tasks.perturb.perturb`, one cell at a time (module docstring)."""
    device = torch.device(device)
    model = model.to(device).eval()
    max_genes = min(max_genes or model.config.max_len - 1, model.config.max_len - 1)
    targets = _targets(goal, alternatives, device)
    high = {} if high_values is None else {t: float(v) for t, v in enumerate(high_values)}
    kinds = perturbations.kind_names()
    combos = [[int(g) for g in row if g >= 0] for row in perturbations.genes]
    rows, gene_sums, gene_counts = [], defaultdict(float), defaultdict(int)
    embeddings = np.zeros((len(cells), model.config.d_model), dtype=np.float32)
    with torch.no_grad():
        for cell in range(len(cells)):
            ids, values = cells.ids[cell].tolist(), cells.values[cell].tolist()
            species = torch.tensor([int(cells.species[cell])], device=device)
            base = model.encode(torch.tensor([ids], device=device), torch.tensor([values], device=device), species)[0]
            embeddings[cell] = pool(base[None], torch.ones(1, len(ids), device=device), pooling)[0].cpu().numpy()
            todo = [p for p, genes in enumerate(combos) if kinds[p] == "overexpress" or set(genes) & set(ids)]
            for start in range(0, len(todo), forward_batch_size):
                batch = todo[start:start + forward_batch_size]
                edited = [edit_cell(ids, values, combos[p], kinds[p], perturbations.factor[p], high, max_genes)
                          for p in batch]
                after = _forward_padded(model, edited, species, device)
                for p, (new_ids, _, moved), states in zip(batch, edited, after):
                    rows.append(_measure(cell, p, len(set(combos[p]) & set(ids)), base, states, moved, ids,
                                         pooling, targets, gene_sums, gene_counts))
    cell_table = _cell_table([np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)], perturbations, targets)
    genes = pd.DataFrame([{"perturbation": p, "token": t, "shift_sum": s, "n_cells": gene_counts[(p, t)]}
                          for (p, t), s in gene_sums.items()])
    return PerturbResult(cell_table, _genes(genes, perturbations), embeddings, {"pooling": pooling})


def _forward_padded(model, edited, species, device) -> list[torch.Tensor]:
    """One forward pass over one cell's perturbed copies (padded to the longest); their states, unpadded."""
    length = max(len(ids) for ids, _, _ in edited)
    ids = torch.zeros(len(edited), length, dtype=torch.long, device=device)
    values = torch.zeros(len(edited), length, device=device)
    for row, (new_ids, new_values, _) in enumerate(edited):
        ids[row, :len(new_ids)] = torch.tensor(new_ids)
        values[row, :len(new_values)] = torch.tensor(new_values)
    hidden = model.encode(ids, values, species.expand(len(edited)), attention_mask=ids != model.config.pad_id)
    return [hidden[row, :1 + len(new_ids)] for row, (new_ids, _, _) in enumerate(edited)]


def _measure(cell, p, n_present, base, after, moved, ids, pooling, targets, gene_sums, gene_counts) -> list:
    """The cell row of one perturbation, and its gene shifts added to the running dictionaries gene by gene."""
    kept = sorted(moved)
    before_states = torch.cat([base[:1], base[1:][kept]])
    after_states = torch.cat([after[:1], after[1:][[moved[j] for j in kept]]])
    everything = torch.ones(1, len(kept), device=base.device)
    e_before = pool(before_states[None], everything, pooling)[0]
    e_after = pool(after_states[None], everything, pooling)[0]
    row = [cell, p, n_present, float(1 - F.cosine_similarity(e_before, e_after, dim=0))]
    if targets is not None:
        toward = _unit(e_after[None]) @ targets.vectors.T - _unit(e_before[None]) @ targets.vectors.T
        row.extend(toward[0].tolist())
    shifts = (1 - F.cosine_similarity(before_states[1:], after_states[1:], dim=-1)).tolist()  # one call per copy
    for j, shift in zip(kept, shifts):
        gene_sums[(p, ids[j])] += shift
        gene_counts[(p, ids[j])] += 1
    return row


def _genes(genes: pd.DataFrame, perturbations: PerturbationSet) -> pd.DataFrame:
    if genes.empty:
        return _gene_table([], perturbations)
    return _gene_table([genes.set_index(["perturbation", "token"])], perturbations)

