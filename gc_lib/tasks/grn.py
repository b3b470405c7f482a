"""TF→target edge scores from gene vectors, and the baselines they are compared with (notebook 06).

GeneCompass infers a gene regulatory network by the cosine similarity of gene embeddings (DESIGN.md §1): every
(TF, candidate target) pair gets the cosine of the two genes' vectors (:func:`cosine_scores`). The same function
scores any other vectors — the GRN prior's own human vectors are the "does the model add anything over its input"
baseline. Baselines on the same genes and cells:

- co-expression: Pearson or Spearman correlation of TF and target over cells (:func:`coexpression_scores`);
- GRNBoost2 (Moerman et al., *Bioinformatics* 2019): per target, a stochastic gradient-boosting regression of
  its expression on every TF's, the TFs' importances as edge scores (:func:`grnboost2_scores`, :data:`GRNBOOST2_PATH`);
- random scores, seeded (:func:`random_scores`): the floor every method must clear.

Every scorer returns ``(scores, info)``: a tidy table ``tf, target, score`` of the pairs it could score (never
``tf == target``) and a dict saying what was covered. Pairs a method could not score are absent from the table;
:func:`gc_lib.tasks.grn_eval.edge_metrics` ranks them last, so no method is scored on an easier universe.
The candidate universe, the validation/test split and the metrics live in :mod:`gc_lib.tasks.grn_eval`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.ensemble import GradientBoostingRegressor
from tqdm.auto import tqdm

from ..priors.signal import unit_rows

SCORE_COLUMNS = ["tf", "target", "score"]
#: GRNBoost2's regressor (arboreto ``SGBM_KWARGS``): many small, subsampled trees, stopped early
GRNBOOST2_SETTINGS = {"learning_rate": 0.01, "n_estimators": 5000, "max_features": 0.1, "subsample": 0.9}
EARLY_STOP_WINDOW = 25   # stop when the mean out-of-bag improvement of the last 25 trees turns negative
#: how GRNBoost2 runs here, and why not through ``arboreto.algo.grnboost2``
GRNBOOST2_PATH = (
    "GRNBoost2's per-target step, one target after another (joblib for n_jobs > 1), without dask: "
    "arboreto.core.fit_model + to_feature_importances when arboreto imports (backend 'arboreto'), else the same "
    "sklearn GradientBoostingRegressor with the same settings and early-stopping monitor (backend 'sklearn'); "
    "both give identical scores for one seed. arboreto 0.1.6's own driver, arboreto.algo.grnboost2, fails with "
    "dask/distributed 2026.8.0: with a local Client 'TypeError: Must supply at least one delayed object' "
    "(core.create_graph), with client_or_address='local' 'TypeError: Server.__init__() got an unexpected keyword "
    "argument 'diagnostics_port''.")
CORRELATIONS = ("pearson", "spearman")


def _ids(names, what: str) -> list[str]:
    """Unique names as strings, first occurrence kept; empty raises ``ValueError``."""
    names = pd.unique(pd.Series(list(names), dtype=object).dropna().astype(str))
    if len(names) == 0:
        raise ValueError(f"{what} is empty")
    return list(names)


def _tidy(tfs: list[str], targets: list[str], matrix: np.ndarray) -> pd.DataFrame:
    """A (TF × target) score matrix as ``tf, target, score`` rows, without ``tf == target`` and NaN scores."""
    tf = np.repeat(np.asarray(tfs, dtype=object), len(targets))
    target = np.tile(np.asarray(targets, dtype=object), len(tfs))
    score = np.asarray(matrix, dtype=np.float64).ravel()
    keep = (tf != target) & ~np.isnan(score)
    return pd.DataFrame({"tf": tf[keep], "target": target[keep], "score": score[keep]})


def clean_vectors(vectors: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Gene vectors fit to score: rows without a gene ID (NaN index, e.g. a mouse gene without a human ortholog) or
    with any NaN value (e.g. a gene never tokenised) dropped, both counted; a duplicated ID raises ``ValueError``."""
    if not isinstance(vectors, pd.DataFrame):
        raise ValueError(f"vectors must be a DataFrame indexed by gene ID; got {type(vectors).__name__}")
    if isinstance(vectors.index, pd.RangeIndex) or pd.api.types.is_numeric_dtype(vectors.index):
        raise ValueError("vectors have no gene index (a numbered index); index the rows by human Ensembl ID")
    no_id = vectors.index.isna()
    no_vector = vectors.isna().any(axis=1).to_numpy() & ~no_id
    kept = vectors[~no_id & ~no_vector]
    kept.index = kept.index.astype(str)
    duplicated = kept.index[kept.index.duplicated()]
    if len(duplicated):
        raise ValueError(f"{len(duplicated)} gene IDs occur twice in the vectors, e.g. {list(duplicated[:3])}; "
                         "average or choose one vector per gene first")
    return kept, {"genes_without_id": int(no_id.sum()), "genes_without_vector": int(no_vector.sum()),
                  "genes_with_vector": int(len(kept))}


def cosine_scores(vectors: pd.DataFrame, tfs, candidates) -> tuple[pd.DataFrame, dict]:
    """Cosine similarity of every TF's vector with every candidate target's: ``(scores, info)``.

    ``vectors``: one row per gene, indexed by human Ensembl ID (cleaned by :func:`clean_vectors`). One matrix
    product of the unit vectors, (TFs × d) @ (d × candidates). TFs and candidates without a vector are left out
    and counted in ``info`` (the evaluation ranks their pairs last).
    """
    vectors, info = clean_vectors(vectors)
    tfs, candidates = _ids(tfs, "tfs"), _ids(candidates, "candidates")
    tf_in = [g for g in tfs if g in vectors.index]
    target_in = [g for g in candidates if g in vectors.index]
    if not tf_in:
        raise ValueError(f"none of the {len(tfs)} TFs has a vector, e.g. {tfs[:3]}; are both in human Ensembl IDs?")
    unit = unit_rows(vectors.to_numpy(dtype=np.float64))
    position = pd.Series(np.arange(len(vectors)), index=vectors.index)
    matrix = unit[position[tf_in].to_numpy()] @ unit[position[target_in].to_numpy()].T   # (TFs, candidates)
    info.update(method="cosine", tfs=len(tf_in), tfs_missing=len(tfs) - len(tf_in), candidates=len(target_in),
                candidates_missing=len(candidates) - len(target_in), dimensions=int(vectors.shape[1]))
    return _tidy(tf_in, target_in, matrix), info


def _columns(expression, genes, wanted: list[str]) -> tuple[np.ndarray, list[str]]:
    """The dense (cells × k) float64 columns of the ``wanted`` genes present in ``expression``, and their names."""
    if isinstance(expression, pd.DataFrame):
        genes = expression.columns if genes is None else genes
        expression = expression.to_numpy()
    if genes is None:
        raise ValueError("genes is required (the Ensembl ID of every column) unless expression is a DataFrame")
    genes = pd.Index([str(g) for g in genes])
    if expression.ndim != 2 or expression.shape[1] != len(genes):
        raise ValueError(f"expression is {expression.shape}; expected cells × {len(genes)} genes")
    if genes.has_duplicates:
        raise ValueError(f"genes name a column twice, e.g. {list(genes[genes.duplicated()][:3])}")
    present = [g for g in wanted if g in genes]
    block = expression[:, genes.get_indexer(present)]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return block.astype(np.float64), present


def _tf_target_block(expression, genes, tfs, targets):
    """What both expression-based scorers start from: the dense columns of the TFs and targets, the column of each
    gene, and the TFs and targets that are columns (in order); no TF among the columns raises ``ValueError``."""
    tfs, targets = _ids(tfs, "tfs"), _ids(targets, "targets")
    block, present = _columns(expression, genes, list(dict.fromkeys(tfs + targets)))
    column = {g: i for i, g in enumerate(present)}
    tf_in, target_in = [g for g in tfs if g in column], [g for g in targets if g in column]
    if not tf_in:
        raise ValueError(f"none of the {len(tfs)} TFs is a column of expression, e.g. {tfs[:3]}")
    return block, column, tfs, targets, tf_in, target_in


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``a`` with every column of ``b`` (NaN where one is constant)."""
    def standardise(x):
        x = x - x.mean(axis=0)
        sd = np.sqrt((x ** 2).mean(axis=0))
        return x / np.where(sd > 0, sd, np.nan)
    return np.clip(standardise(a).T @ standardise(b) / len(a), -1.0, 1.0)


def coexpression_scores(expression, genes, tfs, targets, *, method: str = "pearson",
                        absolute: bool = True) -> tuple[pd.DataFrame, dict]:
    """Correlation over cells of each TF with each target: ``(scores, info)``.

    ``expression``: cells × genes, dense, scipy sparse or a DataFrame (e.g. log-normalised), its columns named
    by ``genes`` (human Ensembl IDs; a DataFrame's columns when ``genes`` is None). Only the columns of the TFs and
    targets are made dense. ``method``: ``"pearson"``, or ``"spearman"`` (Pearson of the ranks, ties averaged).

    ``absolute`` (default True): the score is |r|, because a TF represses as well as activates its targets and
    the reference networks hold both kinds, so a strong negative correlation is as much evidence of an edge as a
    positive one. ``absolute=False`` scores r itself; which to use is a choice to make on the validation edges,
    never on the scored ones. Pairs with a constant gene have no correlation and are left out (counted).
    """
    if method not in CORRELATIONS:
        raise ValueError(f"method must be one of {CORRELATIONS}; got {method!r}")
    block, column, tfs, targets, tf_in, target_in = _tf_target_block(expression, genes, tfs, targets)
    if method == "spearman":
        block = rankdata(block, axis=0)
    r = _correlation(block[:, [column[g] for g in tf_in]], block[:, [column[g] for g in target_in]])
    scores = _tidy(tf_in, target_in, np.abs(r) if absolute else r)
    n_pairs = len(tf_in) * len(target_in) - len(set(tf_in) & set(target_in))
    info = {"method": method, "absolute": absolute, "cells": int(block.shape[0]), "tfs": len(tf_in),
            "tfs_missing": len(tfs) - len(tf_in), "targets": len(target_in),
            "targets_missing": len(targets) - len(target_in), "pairs_undefined": n_pairs - len(scores),
            "constant_genes": int((block.std(axis=0) == 0).sum())}
    return scores, info


class EarlyStop:
    """GRNBoost2's early-stopping monitor (arboreto ``EarlyStopMonitor``): stop once the mean out-of-bag
    improvement over the last ``window`` trees is negative."""

    def __init__(self, window: int = EARLY_STOP_WINDOW):
        self.window = window

    def __call__(self, i: int, regressor, _locals) -> bool:
        if i < self.window - 1:
            return False
        return bool(np.mean(regressor.oob_improvement_[i - self.window + 1: i + 1]) < 0)


def _arboreto():
    """``arboreto.core`` when arboreto imports, else None (it is an optional extra: ``pip install gc_lib[grn]``)."""
    try:
        from arboreto import core
    except ImportError:
        return None
    return core


def _fit_target(x: np.ndarray, y: np.ndarray, settings: dict, window: int, seed: int,
                backend: str) -> tuple[np.ndarray, int]:
    """One target's regression: the TFs' importances × the number of trees (as arboreto does, so a target whose
    regression kept improving for longer weighs more in a pooled ranking), and that number of trees."""
    if backend == "arboreto":
        core = _arboreto()
        model = core.fit_model("GBM", settings, x, y, early_stop_window_length=window, seed=seed)
        return core.to_feature_importances("GBM", settings, model), len(model.estimators_)
    model = GradientBoostingRegressor(random_state=seed, **settings).fit(x, y, monitor=EarlyStop(window))
    return model.feature_importances_ * len(model.estimators_), len(model.estimators_)


def grnboost2_scores(expression, genes, tfs, targets, *, seed: int = 0, n_estimators: int = 5000,
                     early_stop_window: int = EARLY_STOP_WINDOW, backend: str = "auto", n_jobs: int = 1,
                     progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """GRNBoost2 (Moerman et al., *Bioinformatics* 2019) edge scores: ``(scores, info)``.

    For every target: a stochastic gradient-boosting regression (:data:`GRNBOOST2_SETTINGS`, at most
    ``n_estimators`` trees, early stopping after ``early_stop_window``) of its expression on the expression of
    every TF but itself; the TFs' importances are the edge scores (0 for a TF no tree used). Inputs as in
    :func:`coexpression_scores`. Every target uses the same ``seed``, as arboreto does, so scores are
    deterministic. ``backend``: ``"arboreto"``, ``"sklearn"`` or ``"auto"`` (arboreto when it imports); see
    :data:`GRNBOOST2_PATH`. Cost: one regression per target, about 10–50 ms for a few hundred cells and TFs;
    choose fewer ``targets`` (and the same candidate universe) for a quick run. Constant targets are skipped.
    """
    if backend not in ("auto", "arboreto", "sklearn"):
        raise ValueError(f"backend must be 'auto', 'arboreto' or 'sklearn'; got {backend!r}")
    if backend != "sklearn" and _arboreto() is None:
        if backend == "arboreto":
            raise ValueError("backend='arboreto' but arboreto does not import; pip install 'gc_lib[grn]'")
        backend = "sklearn"
    backend = "arboreto" if backend == "auto" else backend
    block, column, tfs, targets, tf_in, target_in = _tf_target_block(expression, genes, tfs, targets)
    tf_set = set(tf_in)
    fitted = [t for t in target_in if block[:, column[t]].std() > 0 and tf_set - {t}]
    settings = {**GRNBOOST2_SETTINGS, "n_estimators": int(n_estimators)}
    tf_block = block[:, [column[g] for g in tf_in]]

    def one(target):
        keep = [i for i, g in enumerate(tf_in) if g != target]
        importances, trees = _fit_target(tf_block[:, keep], block[:, column[target]], settings,
                                         early_stop_window, seed, backend)
        return pd.DataFrame({"tf": [tf_in[i] for i in keep], "target": target, "score": importances}), trees

    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(one)(t) for t in fitted)
    results = list(tqdm(jobs, total=len(fitted), desc="GRNBoost2 targets", disable=not progress))
    scores = (pd.concat([r[0] for r in results], ignore_index=True) if results
              else pd.DataFrame(columns=SCORE_COLUMNS).astype({"score": float}))
    trees = [r[1] for r in results]
    info = {"method": "grnboost2", "backend": backend, "path": GRNBOOST2_PATH, "settings": settings,
            "early_stop_window": early_stop_window, "seed": seed, "cells": int(block.shape[0]),
            "tfs": len(tf_in), "tfs_missing": len(tfs) - len(tf_in), "targets": len(fitted),
            "targets_missing": len(targets) - len(target_in), "targets_skipped": len(target_in) - len(fitted),
            "trees_median": float(np.median(trees)) if trees else 0.0, "arboreto_version": _arboreto_version()}
    return scores[SCORE_COLUMNS], info


def _arboreto_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("arboreto")
    except PackageNotFoundError:
        return None


def random_scores(pairs: pd.DataFrame, *, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Uniform random scores for the pairs (``tf, target``) — the floor. Drawn over the pairs sorted by
    (``tf``, ``target``), so the scores depend on ``seed`` and the set of pairs, not on their order."""
    if not {"tf", "target"} <= set(pairs.columns):
        raise ValueError(f"pairs need columns 'tf' and 'target'; got {list(pairs.columns)}")
    table = (pairs[["tf", "target"]].astype(str).drop_duplicates().sort_values(["tf", "target"])
             .reset_index(drop=True))
    table = table[table["tf"] != table["target"]].reset_index(drop=True)
    table["score"] = np.random.default_rng(seed).random(len(table))
    return table, {"method": "random", "seed": seed, "pairs": int(len(table))}
