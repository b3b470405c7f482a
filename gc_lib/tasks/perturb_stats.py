"""Is a perturbation's shift more than any gene's? A null from random genes of matched expression, and FDR.

Any edit moves a cell's embedding a little, and how much depends on the gene's place in the cell: deleting a
top-ranked gene shifts every other gene's rank, deleting one at the tail shifts almost nothing; inserting a gene
pushes the tail out. So a shift means something only next to the shifts of **random genes of matched expression**
perturbed the same way in the same cells:

1. :func:`expression_bins` puts every candidate gene in a bin by its mean value over the cells (genes no cell
   expresses form bin 0 — the genes an overexpression must insert);
2. :func:`matched_null` draws, for each distinct bin pattern of the tested perturbations, ``n_null`` random
   perturbations of the same kind whose genes come from the same bins (never a gene under test);
3. the engine runs tested and null perturbations alike; :func:`perturbation_pvalues` compares each tested
   perturbation's mean statistic over its cells with the null perturbations' means (empirical one-sided p-value,
   ``(1 + #null ≥ observed) / (1 + n_null)``) and adjusts across perturbations with Benjamini–Hochberg.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .cell_tokens import CellTokens
from .perturb_edits import PerturbationSet


def mean_values(cells: CellTokens, vocab_size: int) -> np.ndarray:
    """Per token id: its mean value over the cells (0 in a cell that does not hold it)."""
    return np.asarray(cells.to_csr(vocab_size).sum(0), dtype=np.float64).ravel() / max(len(cells), 1)


def expression_bins(mean: np.ndarray, candidates: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Per token id: its bin (-1 for a token not among ``candidates``; 0 for a candidate no cell expresses;
    1..``n_bins`` by quantile of the mean value among the expressed candidates)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive; got {n_bins}")
    candidates = np.asarray(candidates, dtype=np.int64)
    bins = np.full(len(mean), -1, dtype=np.int64)
    bins[candidates] = 0
    expressed = candidates[mean[candidates] > 0]
    if len(expressed):
        edges = np.quantile(mean[expressed], np.linspace(0, 1, n_bins + 1)[1:-1])
        bins[expressed] = 1 + np.searchsorted(edges, mean[expressed], side="right")
    return bins


def matched_null(perturbations: PerturbationSet, bins: np.ndarray, *, n_null: int = 50,
                 seed: int = 0) -> tuple[PerturbationSet, np.ndarray]:
    """Random perturbations matched to the tested ones, and each tested perturbation's null group.

    Tested perturbations that share a kind, a factor and the bins of their genes (in order) share one group of
    ``n_null`` random perturbations drawn from the same bins, excluding every gene under test. Returns the null
    :class:`PerturbationSet` (names ``null:<group>:<i>``) and ``group`` (P,): the group of each tested perturbation
    (the null rows of group ``g`` are those named ``null:g:*``; see :func:`perturbation_pvalues`).
    """
    tested = set(perturbations.genes[perturbations.genes >= 0].tolist())
    if any(bins[g] < 0 for g in tested):
        raise ValueError("a tested gene lies outside the candidate genes of the bins")
    pools = {b: np.setdiff1d(np.flatnonzero(bins == b), list(tested)) for b in np.unique(bins[bins >= 0])}
    rng = np.random.default_rng(seed)
    keys, group = {}, np.zeros(len(perturbations), dtype=np.int64)
    parts = []
    for p in range(len(perturbations)):
        genes = perturbations.genes[p][perturbations.genes[p] >= 0]
        key = (int(perturbations.kind[p]), float(perturbations.factor[p]), tuple(int(bins[g]) for g in genes))
        if key not in keys:
            keys[key] = len(keys)
            parts.append(_draw(key, keys[key], pools, n_null, rng))
        group[p] = keys[key]
    return PerturbationSet.concat(parts), group


def _draw(key, index: int, pools: dict, n_null: int, rng) -> PerturbationSet:
    kind, factor, gene_bins = key
    for b in set(gene_bins):
        if len(pools.get(b, ())) < gene_bins.count(b):
            raise ValueError(f"expression bin {b} holds too few untested genes for a matched null")
    combos = []
    for _ in range(n_null):
        combo: list[int] = []
        for b in gene_bins:
            choices = np.setdiff1d(pools[b], combo)
            combo.append(int(rng.choice(choices)))
        combos.append(combo)
    built = PerturbationSet.build(combos, "delete", names=[f"null:{index}:{i}" for i in range(n_null)])
    return PerturbationSet(built.genes, np.full(n_null, kind), np.full(n_null, factor), built.names)


def perturbation_pvalues(tested: pd.DataFrame, null: pd.DataFrame, group: np.ndarray, statistic: str, *,
                         names: list[str] | None = None, alternative: str = "greater") -> pd.DataFrame:
    """Per tested perturbation: its mean ``statistic`` over its cells, the null's mean and sd, the empirical
    p-value and the Benjamini–Hochberg q-value.

    ``tested``/``null``: :attr:`PerturbResult.cells` tables of the tested and the null perturbations; ``group``:
    from :func:`matched_null`. ``alternative``: ``"greater"`` (a larger statistic than random genes, e.g. a shift
    toward the goal) or ``"less"``. A tested perturbation that applied to no cell gets NaN.
    """
    from scipy.stats import false_discovery_control

    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less'; got {alternative!r}")
    sign = 1.0 if alternative == "greater" else -1.0
    observed = tested.groupby("perturbation")[statistic].mean()
    null_means = null.groupby("name")[statistic].mean()
    null_group = pd.Series([int(n.split(":")[1]) for n in null_means.index], index=null_means.index)
    rows = []
    for p, g in enumerate(group):
        reference = null_means[null_group == g].to_numpy()
        value = observed.get(p, np.nan)
        exceed = int((sign * reference >= sign * value).sum())
        rows.append({"perturbation": p, "name": names[p] if names else p, "statistic": statistic,
                     "mean": value, "null_mean": reference.mean() if len(reference) else np.nan,
                     "null_sd": reference.std(ddof=1) if len(reference) > 1 else np.nan,
                     "n_null": len(reference), "p_value": (1 + exceed) / (1 + len(reference))
                     if np.isfinite(value) and len(reference) else np.nan})
    table = pd.DataFrame(rows)
    finite = table["p_value"].notna()
    table["q_value"] = np.nan
    if finite.any():
        table.loc[finite, "q_value"] = false_discovery_control(table.loc[finite, "p_value"].to_numpy())
    return table
