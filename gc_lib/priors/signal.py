"""Does a prior carry signal? Cosine similarity of related gene pairs against random pairs, and neighbours.

The check used for every prior (notebook 02): take pairs of genes known to be related by a resource the
prior was *not* built from (co-annotation to a specific GO biological process; TF→target edges held out of
the GRN build), and compare their cosine similarity with that of random pairs drawn from the same genes. The
summary is the AUC — the probability that a related pair is more similar than a random one (0.5: no
signal) — with a one-sided Mann–Whitney p-value. Random pairs come from the genes of the related pairs, so
a prior cannot score by merely separating annotated from unannotated genes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from .gene2vec import pairs_within_groups


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1, so dot products are cosines; a zero row stays zero (it scores 0 with all)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _unit(vectors: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(unit_rows(vectors.to_numpy()), index=vectors.index, columns=vectors.columns)


def _row_dot(unit: pd.DataFrame, a, b) -> np.ndarray:
    return np.einsum("ij,ij->i", unit.loc[list(a)].to_numpy(), unit.loc[list(b)].to_numpy())


def cosine(vectors: pd.DataFrame, a, b) -> np.ndarray:
    """Cosine similarity of the rows ``a[i]`` and ``b[i]`` of ``vectors`` (indexed by gene ID)."""
    return _row_dot(_unit(vectors), a, b)


def pair_signal(vectors: pd.DataFrame, related: pd.DataFrame, *, n_random: int = 20_000, max_related: int = 20_000,
                seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """AUC of related pairs (columns ``a``, ``b``) against random pairs of the same genes.

    Pairs with a gene the prior does not cover are dropped (and counted). Returns a summary and the sampled
    similarities (``kind``: related/random, ``cosine``) for plots.
    """
    rng = np.random.default_rng(seed)
    covered = related["a"].isin(vectors.index) & related["b"].isin(vectors.index) & (related["a"] != related["b"])
    pos = related[covered]
    if len(pos) < 10:
        raise ValueError(f"only {len(pos)} related pairs have both genes in the prior; cannot measure signal")
    if len(pos) > max_related:
        pos = pos.iloc[np.sort(rng.choice(len(pos), max_related, replace=False))]
    pool = np.unique(np.concatenate([pos["a"].to_numpy(), pos["b"].to_numpy()]))
    a, b = rng.choice(pool, n_random), rng.choice(pool, n_random)
    keep = a != b
    unit = _unit(vectors)
    related_cos = _row_dot(unit, pos["a"], pos["b"])
    random_cos = _row_dot(unit, a[keep], b[keep])
    test = mannwhitneyu(related_cos, random_cos, alternative="greater")
    summary = {"related_pairs": int(len(pos)), "related_pairs_uncovered": int((~covered).sum()),
               "random_pairs": int(keep.sum()), "genes": int(len(pool)),
               "median_related": float(np.median(related_cos)), "median_random": float(np.median(random_cos)),
               "auc": float(test.statistic / (len(related_cos) * len(random_cos))), "p_value": float(test.pvalue)}
    samples = pd.concat([pd.DataFrame({"kind": "related", "cosine": related_cos}),
                         pd.DataFrame({"kind": "random", "cosine": random_cos})], ignore_index=True)
    return summary, samples


def specific_groups(annotations: pd.DataFrame, *, gene: str = "ensembl_id", group: str = "go_id",
                    min_size: int = 5, max_size: int = 50) -> pd.DataFrame:
    """Groups of ``min_size``–``max_size`` genes as ``gene_id, group``: specific terms, not "cell process"."""
    sizes = annotations.groupby(group)[gene].transform("nunique")
    kept = annotations[(sizes >= min_size) & (sizes <= max_size)]
    return pd.DataFrame({"gene_id": kept[gene].astype(str).to_numpy(), "group": kept[group].astype(str).to_numpy()})


def group_signal(vectors: pd.DataFrame, groups: pd.DataFrame, *, max_pairs_per_group: int = 200, seed: int = 0,
                 **kwargs) -> tuple[dict, pd.DataFrame]:
    """:func:`pair_signal` for pairs sharing a group (``gene_id, group``), restricted to covered genes first."""
    covered = groups[groups["gene_id"].isin(vectors.index)]
    related = pairs_within_groups(covered, max_pairs_per_group=max_pairs_per_group, seed=seed)
    summary, samples = pair_signal(vectors, related, seed=seed, **kwargs)
    summary["groups"] = int(covered["group"].nunique())
    return summary, samples


def nearest_neighbours(vectors: pd.DataFrame, queries: dict[str, str], symbols: pd.Series, *, k: int = 5
                       ) -> pd.DataFrame:
    """The ``k`` most cosine-similar genes of each query (``{symbol: ensembl_id}``), by symbol.

    Queries the prior does not cover are listed with an empty neighbour list, so a table never hides them.
    """
    unit = _unit(vectors)
    matrix = unit.to_numpy()
    rows = []
    for name, gene_id in queries.items():
        if gene_id not in unit.index:
            rows.append({"gene": name, "neighbours": "(not covered by this prior)"})
            continue
        sims = matrix @ unit.loc[gene_id].to_numpy()
        order = [i for i in np.argsort(-sims, kind="stable") if unit.index[i] != gene_id][:k]
        rows.append({"gene": name, "neighbours": ", ".join(
            f"{symbols.get(unit.index[i], unit.index[i])} {sims[i]:.2f}" for i in order)})
    return pd.DataFrame(rows)


def holdout_tfs(edges: pd.DataFrame, n: int, *, seed: int = 0, min_targets: int = 20, eligible=None) -> list[str]:
    """``n`` TFs (human Ensembl IDs), drawn at random among those with at least ``min_targets`` targets in ``edges``
    (``tf_id, target_id``) and, when given, in ``eligible`` (e.g. TFs the corpus expresses), to hold out **entirely**.

    An edge-level hold-out leaks: the prior still places the TF through its other edges, near targets it shares
    with them. A TF whose every edge is kept out of every prior can be scored without that help (notebook 06)."""
    degree = edges.groupby("tf_id")["target_id"].nunique()
    pool = degree.index[degree >= min_targets]
    if eligible is not None:
        pool = pool[pool.isin(list(eligible))]
    if n > len(pool):
        raise ValueError(f"only {len(pool)} TFs have >= {min_targets} targets (and are eligible); asked for {n}")
    return sorted(np.random.default_rng(seed).choice(np.sort(pool.to_numpy()), n, replace=False).tolist())


def holdout_edges(edges: pd.DataFrame, fraction: float, *, seed: int = 0) -> pd.DataFrame:
    """A random ``fraction`` of TF→target edges (``tf_id, target_id``) as ``tf, target`` to exclude and test on."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(edges), int(round(fraction * len(edges))), replace=False))
    return pd.DataFrame({"tf": edges["tf_id"].to_numpy()[chosen], "target": edges["target_id"].to_numpy()[chosen]})
