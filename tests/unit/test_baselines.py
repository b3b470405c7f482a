"""The shared evaluation protocol of cell classification (gc_lib.tasks.baselines): the same splits for every
method, scores that weigh rare classes, and no transform that learns from the test cells."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gc_lib.tasks import baselines as cb

LABELS = np.array(["a"] * 30 + ["b"] * 20 + ["rare"] * 10)


def test_splits_are_stratified_sorted_and_fixed_by_seed():
    splits = cb.stratified_splits(LABELS, [0, 1], test_fraction=0.3)
    again = cb.stratified_splits(LABELS, [0, 1], test_fraction=0.3)
    for (train, test), (train2, test2) in zip(splits, again):
        assert np.array_equal(train, train2) and np.array_equal(test, test2)
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(LABELS)))
        assert list(train) == sorted(train)
        assert (LABELS[test] == "rare").sum() == 3 and (LABELS[test] == "a").sum() == 9
    assert not np.array_equal(splits[0][1], splits[1][1])


def test_macro_f1_weighs_a_rare_class_like_a_common_one():
    true = np.array(["a"] * 9 + ["rare"])
    result = cb.scores(true, np.array(["a"] * 10))
    assert result["accuracy"] == pytest.approx(0.9)
    assert result["macro_f1"] == pytest.approx((2 * 0.9 / 1.9) / 2)   # F1 of "a", and 0 for the missed rare class


def test_hvgs_are_chosen_on_the_training_cells_only():
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(1.0, 5.0, 200), size=(80, 200)).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts), var=pd.DataFrame(index=[f"g{i}" for i in range(200)]))
    lognorm = cb.log_normalise(adata)
    assert np.allclose(np.expm1(lognorm.X.toarray()).sum(1), 1e4, rtol=1e-3)
    train = np.arange(40)
    chosen = cb.hvg_mask(lognorm, 20, fit_on=train)
    assert chosen.sum() == 20 and np.array_equal(chosen, cb.hvg_mask(lognorm[train].copy(), 20))
    counts[40:, ~chosen] = rng.choice([0.0, 200.0], size=(40, int((~chosen).sum())))   # wild test cells
    wild = cb.log_normalise(ad.AnnData(sp.csr_matrix(counts), var=adata.var))
    assert np.array_equal(cb.hvg_mask(wild, 20, fit_on=train), chosen)       # the test cells changed nothing
    assert not np.array_equal(cb.hvg_mask(wild, 20), chosen)                 # as they would if they were fitted on
    assert cb.log_normalised_hvg(adata, 20, fit_on=train).shape == (80, 20)
    assert cb.hvg_mask(lognorm, 500).all()                                   # fewer genes than asked: all of them


def test_a_test_cell_is_predicted_without_looking_at_the_other_test_cells():
    rng = np.random.default_rng(1)
    labels = np.repeat(["x", "y"], 40)
    features = rng.normal(size=(80, 6)) + (labels == "y")[:, None] * 2.0
    train, test = cb.stratified_splits(labels, [0], 0.25)[0]
    shifted = features.copy()
    shifted[test[1:]] += 100.0                                                # move every other test cell far away
    for predict in (cb.logistic_regression, cb.pca_knn):
        first = predict(features, labels, train, test)[0]
        assert predict(shifted, labels, train, test)[0] == first
    assert (cb.logistic_regression(features, labels, train, test) == labels[test]).mean() > 0.8


def test_score_splits_summary_verdict_and_per_class_table():
    seeds = [0, 1, 2]
    splits = cb.stratified_splits(LABELS, seeds, 0.3)
    perfect, perfect_predictions = cb.score_splits("oracle", lambda tr, te, s: LABELS[te], LABELS, splits, seeds)
    majority, majority_predictions = cb.score_splits("majority", lambda tr, te, s: np.full(len(te), "a"), LABELS,
                                                     splits, seeds)
    assert [r["seed"] for r in perfect] == seeds and all(r["macro_f1"] == 1 for r in perfect)
    summary = cb.summarise(pd.DataFrame(perfect + majority))
    assert list(summary.index) == ["oracle", "majority"] and (summary["seeds"] == 3).all()
    assert summary.loc["majority", "macro_f1_mean"] == pytest.approx(np.mean([r["macro_f1"] for r in majority]))
    assert cb.verdict(summary, "majority").startswith("oracle wins with macro-F1 1.000; majority reaches")
    assert cb.verdict(summary, "oracle").startswith("oracle wins: macro-F1 1.000, +")
    table = cb.per_class_table(LABELS, {**perfect_predictions, **majority_predictions}, splits, seeds,
                               ["oracle", "majority"], ["a", "b", "rare"])
    assert table.loc["oracle"].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["majority", "rare"] == 0 and 0 < table.loc["majority", "a"] < 1
