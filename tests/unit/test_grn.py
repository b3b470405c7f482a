"""GRN inference scoring (gc_lib.tasks.grn, grn_eval): edge scores from vectors and from expression, the candidate
universe without the prior's edges, a TF-wise validation/test split, and metrics checked against scikit-learn."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from gc_lib.tasks import grn, grn_eval

GENES = [f"ENSG{i:011d}" for i in range(8)]
TFS = GENES[:3]


def _expression(n_cells=120, seed=0):
    """Cells × 8 genes: gene 3 follows TF 0, gene 4 falls with TF 1, the rest noise; gene 7 constant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_cells, len(GENES)))
    x[:, 3] = 2 * x[:, 0] + 0.3 * rng.normal(size=n_cells)
    x[:, 4] = -1.5 * x[:, 1] + 0.3 * rng.normal(size=n_cells)
    x[:, 7] = 1.0
    return x


def _score_matrix(scores):
    return scores.set_index(["tf", "target"])["score"]


# ---- scores from vectors -------------------------------------------------------------------------------------------

def test_cosine_scores_every_tf_candidate_pair_and_drops_genes_without_a_vector():
    rng = np.random.default_rng(1)
    index = pd.Index([*GENES[:6], np.nan, GENES[6]], dtype=object)
    vectors = pd.DataFrame(rng.normal(size=(8, 5)), index=index)
    vectors.iloc[7] = np.nan                                    # GENES[6]: never tokenised
    scores, info = grn.cosine_scores(vectors, TFS + ["ENSG99999999999"], GENES)
    assert list(scores.columns) == ["tf", "target", "score"]
    assert (scores["tf"] != scores["target"]).all()
    assert len(scores) == 3 * 6 - 3                             # 3 TFs × 6 covered candidates, no self pairs
    assert info["genes_without_id"] == 1 and info["genes_without_vector"] == 1
    assert info["tfs_missing"] == 1 and info["candidates_missing"] == 2
    a, b = vectors.loc[GENES[0]].to_numpy(), vectors.loc[GENES[5]].to_numpy()
    expected = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert _score_matrix(scores)[GENES[0], GENES[5]] == pytest.approx(expected)


def test_cosine_scores_reject_bad_vectors():
    vectors = pd.DataFrame(np.ones((3, 2)))
    with pytest.raises(ValueError, match="no gene index"):
        grn.cosine_scores(vectors, TFS, GENES)
    with pytest.raises(ValueError, match="twice"):
        grn.cosine_scores(pd.DataFrame(np.ones((2, 2)), index=[GENES[0]] * 2), TFS, GENES)
    with pytest.raises(ValueError, match="none of the 3 TFs"):
        grn.cosine_scores(pd.DataFrame(np.ones((2, 2)), index=GENES[5:7]), TFS, GENES)


# ---- co-expression and GRNBoost2 -----------------------------------------------------------------------------------

def test_pearson_and_spearman_match_scipy_and_sparse_matches_dense():
    x = _expression()
    x[:, [2, 6]] = np.round(x[:, [2, 6]])                       # ties for Spearman
    pearson, info = grn.coexpression_scores(x, GENES, TFS, GENES, absolute=False)
    table = _score_matrix(pearson)
    assert table[GENES[0], GENES[5]] == pytest.approx(np.corrcoef(x[:, 0], x[:, 5])[0, 1])
    assert table[GENES[1], GENES[4]] < -0.9
    assert (GENES[0], GENES[7]) not in table.index and info["pairs_undefined"] == 3   # the constant gene
    spearman, _ = grn.coexpression_scores(sp.csr_matrix(x), GENES, TFS, GENES, method="spearman")
    assert _score_matrix(spearman)[GENES[2], GENES[6]] == pytest.approx(abs(spearmanr(x[:, 2], x[:, 6])[0]))
    dense, _ = grn.coexpression_scores(pd.DataFrame(x, columns=GENES), None, TFS, GENES, method="spearman")
    pd.testing.assert_frame_equal(spearman, dense)
    absolute, _ = grn.coexpression_scores(x, GENES, TFS, GENES)
    assert np.allclose(absolute["score"], pearson["score"].abs())
    with pytest.raises(ValueError, match="method"):
        grn.coexpression_scores(x, GENES, TFS, GENES, method="kendall")
    with pytest.raises(ValueError, match="expected cells × 7 genes"):
        grn.coexpression_scores(x, GENES[:7], TFS, GENES)


def test_grnboost2_finds_the_driving_tf_deterministically():
    x = _expression(200)
    targets = GENES[3:]
    scores, info = grn.grnboost2_scores(x, GENES, TFS, targets, seed=3, backend="sklearn", progress=False)
    table = _score_matrix(scores)
    assert table.loc[(slice(None), GENES[3])].idxmax() == GENES[0]
    assert table.loc[(slice(None), GENES[4])].idxmax() == GENES[1]
    assert info["targets"] == 4 and info["targets_skipped"] == 1 and info["backend"] == "sklearn"
    assert len(scores) == 3 * 4 and (scores["score"] >= 0).all()
    again, _ = grn.grnboost2_scores(x, GENES, TFS, targets, seed=3, backend="sklearn", progress=False)
    pd.testing.assert_frame_equal(scores, again)
    as_target, _ = grn.grnboost2_scores(x, GENES, TFS, [GENES[0]], backend="sklearn", n_estimators=50,
                                        progress=False)
    assert set(as_target["tf"]) == set(TFS[1:])                 # a TF is never its own regulator
    with pytest.raises(ValueError, match="backend"):
        grn.grnboost2_scores(x, GENES, TFS, targets, backend="xgboost")


def test_grnboost2_through_arboreto_equals_the_sklearn_step():
    pytest.importorskip("arboreto.core")
    x = _expression(150)
    ours, _ = grn.grnboost2_scores(x, GENES, TFS, GENES[3:6], seed=7, backend="sklearn", progress=False)
    theirs, info = grn.grnboost2_scores(x, GENES, TFS, GENES[3:6], seed=7, backend="arboreto", progress=False)
    assert info["backend"] == "arboreto" and info["arboreto_version"]
    pd.testing.assert_frame_equal(ours, theirs)


def test_grnboost2_falls_back_to_sklearn_without_arboreto(monkeypatch):
    monkeypatch.setattr(grn, "_arboreto", lambda: None)
    x = _expression(80)
    _, info = grn.grnboost2_scores(x, GENES, TFS, GENES[3:5], n_estimators=30, progress=False)
    assert info["backend"] == "sklearn" and info["settings"]["n_estimators"] == 30
    with pytest.raises(ValueError, match="does not import"):
        grn.grnboost2_scores(x, GENES, TFS, GENES[3:5], backend="arboreto")


def test_random_scores_depend_on_seed_not_on_row_order():
    pairs = pd.DataFrame({"tf": ["a", "a", "b", "b"], "target": ["x", "y", "x", "a"]})
    first, _ = grn.random_scores(pairs, seed=1)
    shuffled, _ = grn.random_scores(pairs.iloc[::-1], seed=1)
    pd.testing.assert_frame_equal(first, shuffled)
    assert not np.allclose(first["score"], grn.random_scores(pairs, seed=2)[0]["score"])


# ---- universe and split --------------------------------------------------------------------------------------------

def test_candidate_pairs_drop_what_the_prior_saw_in_either_direction():
    genes = ["t1", "t2", "g1", "g2", "g3"]
    prior = pd.DataFrame({"tf_id": ["t1", "g2"], "target_id": ["g1", "t2"], "tf": ["SYM1", "SYM2"],
                          "target": ["x", "y"]})                 # tf_id wins over a symbol column
    positives = pd.DataFrame({"tf": ["t1", "t2", "t2", "zz"], "target": ["g2", "g3", "g2", "g1"]})
    universe, info = grn_eval.candidate_pairs(["t1", "t2"], genes, positives, prior_edges=prior)
    pairs = set(zip(universe["tf"], universe["target"]))
    assert ("t1", "g1") not in pairs and ("t2", "g2") not in pairs     # (g2 → t2) was seen as a pair
    assert len(universe) == 2 * 4 - 2 and ("t1", "t2") in pairs
    assert set(zip(*universe.loc[universe["positive"], ["tf", "target"]].T.to_numpy())) == {("t1", "g2"),
                                                                                          ("t2", "g3")}
    assert info["positives_seen_by_prior"] == 1 and info["positives_outside_pairs"] == 1
    directed, _ = grn_eval.candidate_pairs(["t1", "t2"], genes, positives, prior_edges=prior, undirected_prior=False)
    assert len(directed) == len(universe) + 1
    with pytest.raises(ValueError, match="none of the 1 positives"):
        grn_eval.candidate_pairs(["t1"], genes, positives.iloc[[3]])
    with pytest.raises(ValueError, match="tfs is empty"):
        grn_eval.candidate_pairs([], genes, positives)


def test_split_heldout_by_tf_keeps_each_tf_on_one_side():
    rng = np.random.default_rng(0)
    edges = pd.DataFrame({"tf": rng.choice([f"tf{i}" for i in range(10)], 60), "target": [f"g{i}" for i in range(60)]})
    validation, test = grn_eval.split_heldout(edges, 0.3, seed=4)
    assert not set(validation["tf"]) & set(test["tf"]) and len(validation) + len(test) == len(edges)
    assert validation["tf"].nunique() == round(0.3 * edges["tf"].nunique())
    again, _ = grn_eval.split_heldout(edges.sample(frac=1, random_state=1), 0.3, seed=4)
    assert set(again["target"]) == set(validation["target"])
    by_edge, rest = grn_eval.split_heldout(edges, 0.25, seed=4, by="edge")
    assert len(by_edge) == 15 and len(rest) == 45
    with pytest.raises(ValueError, match="at least 2 TFs"):
        grn_eval.split_heldout(edges[edges["tf"] == edges["tf"].iloc[0]], 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        grn_eval.split_heldout(edges, 1.0)


# ---- metrics -------------------------------------------------------------------------------------------------------

def test_precision_at_k_and_early_precision_by_hand():
    labels = np.array([1, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.8, 0.5, 0.1, 0.0])
    assert grn_eval.precision_at_k(labels, scores, 1) == 1.0
    assert grn_eval.precision_at_k(labels, scores, 2) == pytest.approx((1 + 0.5) / 2)   # one of two tied places
    assert grn_eval.precision_at_k(labels, scores, 3) == pytest.approx(2 / 3)
    assert np.isnan(grn_eval.precision_at_k(labels, scores, 7))
    row = grn_eval.ranking_metrics(labels, scores, ks=(1, 3))
    assert row["early_precision"] == pytest.approx(0.75) and row["epr"] == pytest.approx(0.75 / (2 / 6))
    assert row["precision_at_3"] == pytest.approx(2 / 3)
    assert row["auprc"] == pytest.approx(average_precision_score(labels, scores))
    assert row["auroc"] == pytest.approx(roc_auc_score(labels, scores))


def _toy_evaluation():
    rng = np.random.default_rng(5)
    universe = pd.DataFrame({"tf": np.repeat(["A", "B", "C"], 20), "target": [f"g{i}" for i in range(60)]})
    universe["positive"] = rng.random(60) < 0.25
    universe.loc[universe["tf"] == "C", "positive"] = False    # a TF without positives
    universe.loc[[0, 20], "positive"] = True
    scores = universe[["tf", "target"]].assign(score=np.round(rng.random(60) + universe["positive"] * 0.3, 1))
    return universe, scores


def test_edge_metrics_pool_and_per_tf_agree_with_sklearn():
    universe, scores = _toy_evaluation()
    positives = universe.loc[universe["positive"], ["tf", "target"]]
    pooled, per_tf = grn_eval.edge_metrics(scores.iloc[::-1], positives, universe, ks=(5,))
    labels, values = universe["positive"].to_numpy(), scores["score"].to_numpy()
    assert pooled["auprc"] == pytest.approx(average_precision_score(labels, values))
    assert pooled["auroc"] == pytest.approx(roc_auc_score(labels, values))
    assert pooled["n_positives"] == labels.sum() and pooled["tfs_without_positives"] == 1
    assert list(per_tf["tf"]) == ["A", "B"] and (per_tf["n_candidates"] == 20).all()
    for _, row in per_tf.iterrows():
        mine = (universe["tf"] == row["tf"]).to_numpy()
        assert row["auprc"] == pytest.approx(average_precision_score(labels[mine], values[mine]))
        assert row["auroc"] == pytest.approx(roc_auc_score(labels[mine], values[mine]))
        assert row["n_positives"] == labels[mine].sum()
        k = int(labels[mine].sum())
        assert row["epr"] == pytest.approx(grn_eval.precision_at_k(labels[mine], values[mine], k) / (k / 20))
    assert pooled["per_tf_mean_auroc"] == pytest.approx(per_tf["auroc"].mean())
    same, _ = grn_eval.edge_metrics(scores, None, universe, ks=(5,))
    assert same == pooled


def test_unscored_pairs_rank_last_and_bad_positives_raise():
    universe, scores = _toy_evaluation()
    partial = scores[~universe["positive"]]                     # scores no positive at all
    pooled, _ = grn_eval.edge_metrics(partial, None, universe)
    assert pooled["unscored_pairs"] == universe["positive"].sum() and pooled["auroc"] == 0.0
    extra = pd.concat([scores, pd.DataFrame({"tf": ["Z"], "target": ["g1"], "score": [9.0]})])
    assert grn_eval.edge_metrics(extra, None, universe)[0]["scores_outside_universe"] == 1
    with pytest.raises(ValueError, match="not in the universe"):
        grn_eval.edge_metrics(scores, pd.DataFrame({"tf": ["Z"], "target": ["g1"]}), universe)
    with pytest.raises(ValueError, match="twice"):
        grn_eval.edge_metrics(pd.concat([scores, scores]), None, universe)
    table = grn_eval.compare_methods({"toy": scores, "random": grn.random_scores(universe)[0]}, None, universe)
    assert list(table.index) == ["toy", "random"] and table.loc["toy", "auprc"] == pytest.approx(
        grn_eval.edge_metrics(scores, None, universe)[0]["auprc"])
