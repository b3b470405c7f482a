"""Scores over seeds: per-seed means of per-item scores, then mean ± SD over seeds; the best method per metric; paired
differences between variants on the same seeds (notebooks 07 and 08).

The SD is over training seeds (a deterministic baseline scored once has SD 0), not over the items (conditions,
perturbations) a seed scores: those are averaged first, so every seed weighs the same.
"""
from __future__ import annotations

import pandas as pd


def summarise(scores: pd.DataFrame, by: list[str], metrics) -> pd.DataFrame:
    """Mean ± SD over seeds of the per-seed means: ``scores`` has the ``by`` columns, ``seed`` and the ``metrics``;
    returns one row per ``by`` group with ``<metric>_mean``, ``<metric>_sd`` and ``n_seeds``."""
    metrics = list(metrics)
    missing = sorted(set(by + ["seed", *metrics]) - set(scores.columns))
    if missing:
        raise ValueError(f"scores lack columns {missing}")
    per_seed = scores.groupby(by + ["seed"], sort=False)[metrics].mean()
    grouped = per_seed.groupby(level=list(range(len(by))), sort=False)
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).fillna(0.0).add_suffix("_sd"))
    out["n_seeds"] = grouped.size()
    return out.reset_index()


def winners(summary: pd.DataFrame, by: str, *, within: list[str], metrics, lower_is_better=()) -> pd.DataFrame:
    """The best ``by`` (e.g. method) per metric within each ``within`` group (e.g. split): the highest mean, or the
    lowest for the metrics in ``lower_is_better`` (errors, distances). A NaN score never wins."""
    rows = []
    for keys, group in summary.groupby(within, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for metric in metrics:
            column = group[f"{metric}_mean"]
            if column.notna().any():
                best = group.loc[column.idxmin() if metric in lower_is_better else column.idxmax()]
                rows.append({**dict(zip(within, keys)), "metric": metric, "winner": best[by],
                             "mean": best[f"{metric}_mean"], "sd": best[f"{metric}_sd"]})
    return pd.DataFrame(rows)


def paired_differences(scores: pd.DataFrame, reference: str, others, *, metrics, by=("split", "method"),
                       lower_is_better=()) -> pd.DataFrame:
    """Variant ``reference`` against each of ``others`` on the same seeds: per ``by`` group, comparison and metric,
    the mean and SD over seeds of the per-seed difference (reference − other) of the per-item means, and in how
    many seeds the reference is ahead (a positive difference; negative for ``lower_is_better`` metrics). Pairing by
    seed removes the seed-to-seed noise both share."""
    by, others = list(by), list(others)
    missing = sorted(set(by + ["variant", "seed", *metrics]) - set(scores.columns))
    if missing:
        raise ValueError(f"scores lack columns {missing}")
    per_seed = scores[scores["variant"].isin([reference, *others])].groupby(by + ["variant", "seed"])[
        list(metrics)].mean()
    reference_scores = per_seed.xs(reference, level="variant")
    rows = []
    for other in others:
        diff = (reference_scores - per_seed.xs(other, level="variant")).dropna(how="all")
        for keys, group in diff.groupby(level=list(range(len(by))), sort=False):
            keys = keys if isinstance(keys, tuple) else (keys,)
            for metric in metrics:
                values = group[metric].dropna()
                ahead = values < 0 if metric in lower_is_better else values > 0
                rows.append({**dict(zip(by, keys)), "comparison": f"{reference} − {other}", "metric": metric,
                             "mean": values.mean(), "sd": values.std(ddof=1) if len(values) > 1 else 0.0,
                             "seeds_ahead": int(ahead.sum()), "n_seeds": len(values)})
    return pd.DataFrame(rows)
