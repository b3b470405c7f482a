"""How much a cell-fate screen's ranking depends on its choices (notebook 10): the number of start cells, and the
encoder layer whose states are compared.

- :func:`cell_subsample` re-ranks the TFs from random subsets of the start cells — the per-cell scores the screen
  already measured, so no model pass is needed — and reports the Spearman correlation with the all-cell ranking
  and the known drivers' ranks at each size;
- :func:`ranking_agreement` compares two screens of the same candidates (e.g. two layers, or the model trained
  without priors): Spearman of the scores and the drivers' ranks in each.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _ranks(scores: pd.Series) -> pd.Series:
    return scores.rank(ascending=False, method="average")


def cell_subsample(cells: pd.DataFrame, sizes, *, repeats: int = 10, drivers=(), seed: int = 0) -> pd.DataFrame:
    """Per (size, repeat): Spearman ρ between the TF ranking from ``size`` random start cells and the ranking from
    all of them, and each driver's rank (``rank_<gene>``). ``cells``: the screen's per-cell table (``gene, cell,
    goal_score``); a size at or above the number of cells is skipped."""
    everyone = cells.groupby("gene")["goal_score"].mean()
    full_rank = _ranks(everyone)
    ids = np.sort(cells["cell"].unique())
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        if size >= len(ids):
            continue
        for repeat in range(repeats):
            chosen = rng.choice(ids, size=size, replace=False)
            mine = cells[cells["cell"].isin(chosen)].groupby("gene")["goal_score"].mean()
            rank = _ranks(mine.reindex(everyone.index).fillna(-np.inf))
            row = {"n_cells": int(size), "repeat": repeat, "spearman": float(full_rank.corr(rank, method="spearman"))}
            row.update({f"rank_{g}": float(rank.get(g, np.nan)) for g in drivers})
            rows.append(row)
    row = {"n_cells": len(ids), "repeat": 0, "spearman": 1.0}
    row.update({f"rank_{g}": float(full_rank.get(g, np.nan)) for g in drivers})
    return pd.DataFrame(rows + [row])


def ranking_agreement(first: pd.DataFrame, second: pd.DataFrame, *, drivers=()) -> dict:
    """Spearman ρ between two screens' ``goal_score`` over their shared TFs (``gene`` column), and each driver's
    rank in each (over the shared TFs)."""
    a = first.set_index("gene")["goal_score"]
    b = second.set_index("gene")["goal_score"]
    shared = a.index.intersection(b.index)
    if len(shared) < 3:
        raise ValueError(f"the two screens share {len(shared)} TFs; need three or more to compare rankings")
    a, b = a[shared], b[shared]
    rank_a, rank_b = _ranks(a), _ranks(b)
    return {"shared_tfs": int(len(shared)), "spearman": float(a.corr(b, method="spearman")),
            "driver_ranks": {g: [float(rank_a.get(g, np.nan)), float(rank_b.get(g, np.nan))] for g in drivers}}
