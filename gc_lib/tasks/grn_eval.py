"""Honest scores for inferred TF→target edges (notebook 06): candidate universe, validation/test split, metrics.

The protocol (DESIGN.md §3, leakage rule):

1. hold edges out of the GRN prior (:func:`gc_lib.priors.signal.holdout_edges`, then ``build_grn_prior(...,
   exclude_edges=...)``), so the prior never contains what is scored;
2. split the held-out edges by TF (:func:`split_heldout`): every choice — embedding layer, embedding kind, the
   sign of co-expression — is made on the validation part, and the test part is scored once with it;
3. for each part, :func:`candidate_pairs`: every (TF, candidate gene) pair minus the pairs the prior saw,
   positives = the part's held-out edges;
4. :func:`edge_metrics` (one method) or :func:`compare_methods` (a table): AUPRC, AUROC, BEELINE's early precision
   ratio and precision@k, pooled over all pairs and per TF.

Early precision follows BEELINE (Pratapa et al., *Nature Methods* 2020): the precision among the k highest-scored
pairs, k = the number of positives, divided by the precision of a random ranking (the positive rate).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from .grn import _ids as grn_ids

PAIR_COLUMNS = ["tf", "target"]
SPLITS = ("tf", "edge")


def _ids(names, what: str) -> np.ndarray:
    """:func:`gc_lib.tasks.grn._ids` as an object array."""
    return np.asarray(grn_ids(names, what), dtype=object)


def _edge_columns(edges: pd.DataFrame, what: str) -> tuple[str, str]:
    """The TF and target columns: ``tf_id, target_id`` (a resolved GRN table, whose ``tf`` holds symbols) when
    present, else ``tf, target``."""
    for pair in (("tf_id", "target_id"), ("tf", "target")):
        if set(pair) <= set(edges.columns):
            return pair
    raise ValueError(f"{what} needs columns 'tf' and 'target' (or 'tf_id' and 'target_id'); "
                     f"got {list(edges.columns)}")


def _keys(edges: pd.DataFrame | None, what: str) -> pd.MultiIndex:
    """(TF, target) keys of an edge table, as strings; None gives no keys."""
    if edges is None:
        return pd.MultiIndex.from_arrays([[], []])
    tf, target = _edge_columns(edges, what)
    return pd.MultiIndex.from_arrays([edges[tf].astype(str).to_numpy(), edges[target].astype(str).to_numpy()])


def _swap(keys: pd.MultiIndex) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([keys.get_level_values(1), keys.get_level_values(0)])


def candidate_pairs(tfs, genes, positives: pd.DataFrame, *, prior_edges: pd.DataFrame | None = None,
                    exclude: pd.DataFrame | None = None, undirected_prior: bool = True) -> tuple[pd.DataFrame, dict]:
    """The evaluation pairs of ``tfs``: ``(universe, info)``, the universe a table ``tf, target, positive``.

    Every (TF, gene) with ``gene`` in ``genes`` (e.g. the genes measured in the cells, with a vector) and TF ≠ gene,
    minus the pairs the prior saw: ``prior_edges`` are the edges still in the GRN prior (``tf_id, target_id`` or
    ``tf, target``). They are neither positive nor negative, so they are dropped: scoring an edge the prior was
    trained on rewards memorising the prior, not inferring regulation, and calling it a negative would punish a
    method for knowing a true edge. gene2vec embeds a pair without direction, so with ``undirected_prior`` (default)
    a prior edge B→A also removes (A, B). ``exclude``: more pairs to drop the same way (e.g. the other part of a
    ``by="edge"`` split). ``positives``: the held-out edges (``tf, target``); those outside the pairs (TF not in
    ``tfs``, target not in ``genes``) or seen by the prior are counted in ``info`` (the latter would be a leak).
    """
    tfs, genes = _ids(tfs, "tfs"), _ids(genes, "genes")
    tf, target = np.repeat(tfs, len(genes)), np.tile(genes, len(tfs))
    keep = tf != target
    tf, target = tf[keep], target[keep]
    pairs = pd.MultiIndex.from_arrays([tf, target])
    seen = _keys(prior_edges, "prior_edges")
    seen = seen.append(_swap(seen)) if undirected_prior else seen
    in_prior = pairs.isin(seen)
    dropped = _keys(exclude, "exclude")
    excluded = pairs.isin(dropped) & ~in_prior
    wanted = _keys(positives, "positives").unique()
    if wanted.isin(dropped).any():
        raise ValueError("some positives are also in exclude; a pair cannot be both")
    positive = pairs.isin(wanted)
    kept = ~in_prior & ~excluded
    universe = pd.DataFrame({"tf": tf[kept], "target": target[kept], "positive": positive[kept]})
    with_positive = set(universe.loc[universe["positive"], "tf"])
    info = {"tfs": len(tfs), "genes": len(genes), "pairs_all": int(len(pairs)),
            "pairs_seen_by_prior": int(in_prior.sum()), "pairs_excluded": int(excluded.sum()),
            "pairs": int(len(universe)), "positives": int(universe["positive"].sum()),
            "positive_rate": float(universe["positive"].mean()) if len(universe) else float("nan"),
            "positives_given": int(len(wanted)), "positives_outside_pairs": int((~wanted.isin(pairs)).sum()),
            "positives_seen_by_prior": int((positive & in_prior).sum()),
            "tfs_with_positives": len(with_positive), "tfs_without_positives": len(set(tfs) - with_positive)}
    if universe.empty:
        raise ValueError(f"no candidate pair is left for {len(tfs)} TFs × {len(genes)} genes ({info})")
    if not info["positives"]:
        raise ValueError(f"none of the {len(wanted)} positives is a candidate pair; are TFs, genes and edges all in "
                         f"human Ensembl IDs? ({info})")
    return universe, info


def split_heldout(edges: pd.DataFrame, validation_fraction: float, seed: int = 0, *,
                  by: str = "tf") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out edges split into ``(validation, test)``, deterministic for a ``seed``.

    ``by="tf"`` (default): a ``validation_fraction`` of the TFs (at least one on each side) goes to validation with
    all of its edges, so the TFs scored on the test part were never looked at while choosing an embedding layer, an
    embedding kind or a co-expression sign. ``by="edge"``: a fraction of the edges; a TF then sits on both sides,
    so build each part's universe with the other part as ``candidate_pairs(..., exclude=other)``, else the other
    part's true edges count as negatives. Rows keep their columns; the draw ignores the row order.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie strictly between 0 and 1; got {validation_fraction}")
    if by not in SPLITS:
        raise ValueError(f"by must be one of {SPLITS}; got {by!r}")
    tf, target = _edge_columns(edges, "edges")
    rng = np.random.default_rng(seed)
    if by == "tf":
        units = np.sort(edges[tf].astype(str).unique())
        if len(units) < 2:
            raise ValueError(f"a split by TF needs at least 2 TFs; the edges have {len(units)}")
        n_validation = min(max(int(round(validation_fraction * len(units))), 1), len(units) - 1)
        chosen = set(rng.permutation(units)[:n_validation])
        in_validation = edges[tf].astype(str).isin(chosen).to_numpy()
    else:
        if len(edges) < 2:
            raise ValueError(f"a split by edge needs at least 2 edges; got {len(edges)}")
        order = np.lexsort((edges[target].astype(str).to_numpy(), edges[tf].astype(str).to_numpy()))
        n_validation = min(max(int(round(validation_fraction * len(edges))), 1), len(edges) - 1)
        in_validation = np.zeros(len(edges), dtype=bool)
        in_validation[order[rng.permutation(len(edges))[:n_validation]]] = True
    return edges[in_validation].reset_index(drop=True), edges[~in_validation].reset_index(drop=True)


def precision_at_k(labels, scores, k: int) -> float:
    """Precision among the ``k`` highest ``scores``; pairs tied with the k-th score share the remaining places
    (the expectation over random tie-breaking, the way AUROC counts ties). NaN when ``k`` exceeds the pairs."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    if k < 1 or k > len(scores):
        return float("nan")
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    above, tied = scores > kth, scores == kth
    hits = labels[above].sum() + (k - above.sum()) * labels[tied].mean()
    return float(hits / k)


def ranking_metrics(labels, scores, ks=()) -> dict:
    """AUPRC (average precision), AUROC, early precision and its ratio (EPR), precision@k of one ranking.

    ``auprc_ratio`` and ``epr`` divide by the positive rate, what a random ranking reaches: 1 is chance. AUROC is
    NaN when every pair is positive; ties are handled as scikit-learn does.
    """
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    n, n_positive = len(labels), int(labels.sum())
    if n_positive == 0:
        raise ValueError("no positive pair: AUPRC and early precision are undefined")
    rate = n_positive / n
    auprc = float(average_precision_score(labels, scores))
    early = precision_at_k(labels, scores, n_positive)
    row = {"n_pairs": n, "n_positives": n_positive, "positive_rate": rate, "auprc": auprc,
           "auprc_ratio": auprc / rate,
           "auroc": float(roc_auc_score(labels, scores)) if n_positive < n else float("nan"),
           "early_precision": early, "epr": early / rate}
    row.update({f"precision_at_{k}": precision_at_k(labels, scores, k) for k in ks})
    return row


def _aligned(scores: pd.DataFrame, pairs: pd.MultiIndex) -> tuple[np.ndarray, dict]:
    """The score of every universe pair; pairs without one (absent, NaN) get one below every real score."""
    if "score" not in scores.columns:
        raise ValueError(f"scores need columns 'tf', 'target', 'score'; got {list(scores.columns)}")
    keys = _keys(scores, "scores")
    if keys.has_duplicates:
        raise ValueError(f"scores hold {int(keys.duplicated().sum())} pairs twice; one score per pair")
    values = pd.Series(scores["score"].to_numpy(dtype=np.float64), index=keys).reindex(pairs).to_numpy()
    unscored = ~np.isfinite(values)
    floor = values[~unscored].min() - 1.0 if (~unscored).any() else 0.0
    return np.where(unscored, floor, values), {"unscored_pairs": int(unscored.sum()),
                                                "scores_outside_universe": int((~keys.isin(pairs)).sum())}


def edge_metrics(scores: pd.DataFrame, positives: pd.DataFrame | None, universe: pd.DataFrame, *,
                 ks=(10, 100)) -> tuple[dict, pd.DataFrame]:
    """Score one method's edges (``tf, target, score``) against ``positives`` on ``universe``: ``(pooled, per_tf)``.

    ``universe``: the candidate pairs (``tf, target``; :func:`candidate_pairs`); ``positives``: the true edges
    among them (None: the universe's ``positive`` column). A positive outside the universe raises ``ValueError``.
    Universe pairs the method did not score rank last, tied (counted as ``unscored_pairs``); scores outside the
    universe are ignored (counted). ``pooled``: :func:`ranking_metrics` over all pairs, plus the per-TF means.
    ``per_tf``: one row per TF with at least one positive (``n_candidates``, ``n_positives``, the metrics, with
    k = that TF's positives for early precision); TFs without a positive are skipped and counted.
    """
    pairs = _keys(universe, "universe")
    if pairs.has_duplicates:
        raise ValueError("the universe holds a pair twice")
    if positives is None:
        if "positive" not in universe.columns:
            raise ValueError("give positives, or a universe with a 'positive' column")
        labels = universe["positive"].to_numpy(dtype=bool)
    else:
        wanted = _keys(positives, "positives").unique()
        outside = wanted[~wanted.isin(pairs)]
        if len(outside):
            raise ValueError(f"{len(outside)} positives are not in the universe, e.g. {list(outside[:3])}; build the "
                             "universe with candidate_pairs and take the positives from it")
        labels = pairs.isin(wanted)
    values, counts = _aligned(scores, pairs)
    tf = pairs.get_level_values(0).to_numpy()
    rows, skipped = [], 0
    for name, index in pd.Series(np.arange(len(tf))).groupby(tf, sort=True).indices.items():
        if not labels[index].any():
            skipped += 1
            continue
        row = ranking_metrics(labels[index], values[index], ks)
        rows.append({"tf": name, "n_candidates": row.pop("n_pairs"), **row})
    per_tf = pd.DataFrame(rows)
    pooled = {**ranking_metrics(labels, values, ks), **counts, "tfs": int(len(np.unique(tf))),
              "tfs_scored": len(rows), "tfs_without_positives": skipped}
    pooled.update({f"per_tf_mean_{m}": float(per_tf[m].mean()) for m in ("auprc", "auprc_ratio", "auroc", "epr")})
    return pooled, per_tf


def compare_methods(methods: dict[str, pd.DataFrame], positives: pd.DataFrame | None, universe: pd.DataFrame, *,
                    ks=(10, 100)) -> pd.DataFrame:
    """:func:`edge_metrics`' pooled row for each method (``{name: scores}``) on the same universe: one row per
    method, in the given order."""
    rows = {name: edge_metrics(scores, positives, universe, ks=ks)[0] for name, scores in methods.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")
