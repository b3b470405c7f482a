"""Simple baselines and the shared evaluation protocol of cell classification (notebook 05).

Independent benchmarks found single-cell foundation models often do not beat a logistic regression on
log-normalised highly variable genes, or a kNN on principal components. Every model here is scored on the same
stratified train/test splits (:func:`stratified_splits`), by accuracy and macro-F1 (:func:`scores`, run over all
splits by :func:`score_splits`); every transform that learns from data (HVG selection, scaling, PCA) is fitted on
the training cells of the split only. Notebooks 04 and 05 share this protocol.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..inputs.contract import counts_matrix


def stratified_splits(labels, seeds, test_fraction: float, *, strata=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """One stratified (train, test) split of cell positions per seed — the same for every method. ``strata``: what
    to stratify on, one entry per cell (default: ``labels``; e.g. labels with the rarest classes pooled)."""
    labels = np.asarray(labels)
    strata = labels if strata is None else np.asarray(strata)
    if len(strata) != len(labels):
        raise ValueError(f"strata has {len(strata)} entries for {len(labels)} cells")
    positions = np.arange(len(labels))
    return [tuple(np.sort(part) for part in train_test_split(positions, test_size=test_fraction, stratify=strata,
                                                             random_state=seed)) for seed in seeds]


def scores(true, predicted) -> dict[str, float]:
    """Accuracy and macro-F1 (every class of ``true`` weighs the same, however rare)."""
    labels = sorted(set(np.asarray(true, dtype=str)))
    return {"accuracy": float(accuracy_score(true, predicted)),
            "macro_f1": float(f1_score(true, predicted, labels=labels, average="macro", zero_division=0))}


def log_normalise(adata: AnnData) -> AnnData:
    """Counts normalised to 10,000 per cell, then log1p: a new float32 AnnData with ``adata``'s obs and var names.
    Both steps work cell by cell, so nothing here learns from other cells."""
    lognorm = AnnData(counts_matrix(adata).astype(np.float32), obs=adata.obs[[]], var=adata.var[[]])
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    return lognorm


def hvg_mask(lognorm: AnnData, n_top_genes: int = 2000, fit_on: np.ndarray | None = None) -> np.ndarray:
    """Which genes of the log-normalised ``lognorm`` are the ``n_top_genes`` most variable (all genes when there are
    fewer), judged on the cells ``fit_on`` only (positions; None: all cells) — the training cells of a split, so
    the test cells never choose the features. Uses no labels."""
    if lognorm.n_vars <= n_top_genes:
        return np.ones(lognorm.n_vars, dtype=bool)
    fitted = lognorm if fit_on is None else lognorm[np.asarray(fit_on)].copy()
    table = sc.pp.highly_variable_genes(fitted, n_top_genes=n_top_genes, inplace=False)
    return np.asarray(table["highly_variable"], dtype=bool)


def log_normalised_hvg(adata: AnnData, n_top_genes: int = 2000, *, fit_on: np.ndarray | None = None) -> np.ndarray:
    """:func:`log_normalise`, restricted to the genes of :func:`hvg_mask` (chosen on the cells ``fit_on``): a dense
    (cells × genes) matrix of every cell of ``adata``."""
    lognorm = log_normalise(adata)
    x = lognorm.X[:, hvg_mask(lognorm, n_top_genes, fit_on)]
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def logistic_regression(features: np.ndarray, labels, train: np.ndarray, test: np.ndarray, *,
                        seed: int = 0) -> np.ndarray:
    """Standardise (on the training cells) and fit a multinomial logistic regression; predict the test cells."""
    labels = np.asarray(labels)
    return fit_predict_logistic(features[train], labels[train], features[test], seed=seed)


def fit_predict_logistic(train_x: np.ndarray, train_labels, test_x: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """:func:`logistic_regression` on separate training and test blocks (e.g. two species' cells): the scaler and
    the model see ``train_x`` only."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3_000, random_state=seed))
    return model.fit(train_x, np.asarray(train_labels)).predict(test_x)


def pca_knn(features: np.ndarray, labels, train: np.ndarray, test: np.ndarray, *, n_components: int = 50,
            k: int = 15, seed: int = 0) -> np.ndarray:
    """PCA fitted on the training cells, then a ``k``-nearest-neighbour vote (distance-weighted)."""
    n_components = min(n_components, len(train) - 1, features.shape[1])
    model = make_pipeline(PCA(n_components=n_components, random_state=seed),
                          KNeighborsClassifier(n_neighbors=min(k, len(train)), weights="distance"))
    labels = np.asarray(labels)
    return model.fit(features[train], labels[train]).predict(features[test])


def summarise(results: pd.DataFrame, metrics=("accuracy", "macro_f1")) -> pd.DataFrame:
    """Mean and standard deviation over seeds per method, best macro-F1 first; ``results`` has one row per
    (method, seed)."""
    table = results.groupby("method")[list(metrics)].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table["seeds"] = results.groupby("method").size()
    return table.sort_values(f"{metrics[-1]}_mean", ascending=False)


def per_class_f1(true, predicted, classes) -> pd.Series:
    """F1 of each class (0 where a class is never predicted)."""
    values = f1_score(true, predicted, labels=list(classes), average=None, zero_division=0)
    return pd.Series(values, index=list(classes))


def score_splits(method: str, predict, labels, splits, seeds) -> tuple[list[dict], dict]:
    """Run ``predict(train, test, seed) → predicted labels of test`` on every (seed, split) and score it: rows
    ``{method, seed, accuracy, macro_f1}`` for :func:`summarise`, and the predictions by ``(method, seed)``."""
    labels = np.asarray(labels)
    rows, predictions = [], {}
    for seed, (train, test) in zip(seeds, splits):
        predictions[method, seed] = np.asarray(predict(train, test, seed))
        rows.append({"method": method, "seed": seed, **scores(labels[test], predictions[method, seed])})
    return rows, predictions


def per_class_table(labels, predictions: dict, splits, seeds, methods, classes) -> pd.DataFrame:
    """Per-class F1 (:func:`per_class_f1`) averaged over seeds: one row per method, one column per class;
    ``predictions`` maps ``(method, seed)`` to the test cells' predicted labels."""
    labels = np.asarray(labels)
    rows = {}
    for method in methods:
        per_seed = [per_class_f1(labels[test], predictions[method, seed], classes)
                    for seed, (_, test) in zip(seeds, splits)]
        rows[method] = pd.concat(per_seed, axis=1).mean(axis=1)
    return pd.DataFrame(rows).T


def verdict(summary: pd.DataFrame, ours: str) -> str:
    """One sentence from a :func:`summarise` table: who has the best mean macro-F1, and how far ``ours`` is from it
    (or, when ``ours`` wins, its margin over the runner-up). Said plainly when a simple baseline wins."""
    best, mine = summary.index[0], summary.loc[ours, "macro_f1_mean"]
    if best == ours:
        runner_up = summary.index[1]
        gap = mine - summary.loc[runner_up, "macro_f1_mean"]
        return f"{ours} wins: macro-F1 {mine:.3f}, {gap:+.3f} over {runner_up}"
    top = summary.loc[best, "macro_f1_mean"]
    return f"{best} wins with macro-F1 {top:.3f}; {ours} reaches {mine:.3f}, {top - mine:.3f} lower"
