"""The cell-fate screen's baselines (DE, GRN-prior overlap, random ranks), its sensitivity checks, and the GRN prior's
edges as built."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from scipy.stats import hypergeom

from gc_lib.priors import grn as grn_prior
from gc_lib.tasks import fate_baselines, fate_sensitivity


def two_states(seed=0):
    """40 start and 40 goal cells; gene G0 is up in the goal, G1 up in the start, G2 in neither, G3..G9 noise."""
    rng = np.random.default_rng(seed)
    rates = np.full((80, 10), 3.0)
    rates[40:, 0], rates[:40, 1], rates[:, 2] = 30.0, 30.0, 0.0
    counts = rng.poisson(rates).astype(np.float32)
    labels = np.array(["start"] * 40 + ["goal"] * 40)
    return AnnData(sp.csr_matrix(counts), var=pd.DataFrame(index=[f"G{i}" for i in range(10)])), labels


def test_de_table_finds_the_genes_up_in_each_state():
    adata, labels = two_states()
    de = fate_baselines.de_table(adata, labels, "start", "goal")
    assert de.loc["G0", "log2fc"] > 2 and de.loc["G1", "log2fc"] < -2 and de.loc["G0", "q_value"] < 1e-6
    assert de.loc["G2", "goal_fraction"] == 0 and de.loc["G2", "start_fraction"] == 0
    expressed = (adata.X[labels == "start"].toarray() > 0).mean(0)
    np.testing.assert_allclose(de.loc[[f"G{i}" for i in range(10)], "start_fraction"], expressed)
    assert fate_baselines.de_genes(de, direction="up")[0] == "G0"
    assert fate_baselines.de_genes(de, direction="down")[0] == "G1"
    with pytest.raises(ValueError, match="two or more 'nowhere' cells"):
        fate_baselines.de_table(adata, labels, "nowhere", "goal")


def test_de_scores_flip_for_a_deletion_and_score_unmeasured_tfs_zero():
    adata, labels = two_states()
    de = fate_baselines.de_table(adata, labels, "start", "goal")
    candidates = pd.DataFrame({"token": [1, 2, 3, 4], "gene_id": ["G0", "G1", "G2", "ABSENT"],
                               "gene": ["a", "b", "c", "d"]})
    over = fate_baselines.de_scores(de, candidates, "overexpress").set_index("gene")
    delete = fate_baselines.de_scores(de, candidates, "delete").set_index("gene")
    assert over.loc["a", "score"] == pytest.approx(de.loc["G0", "log2fc"]) and delete.loc["b", "score"] > 2
    assert list(over["measured"]) == [True, True, False, False]
    assert over.loc["c", "score"] == 0 and over.loc["d", "score"] == 0


def test_grn_overlap_is_the_hypergeometric_tail_within_the_universe():
    universe = [f"T{i}" for i in range(100)]
    de_set = {f"T{i}" for i in range(10)}
    edges = pd.DataFrame({"tf": ["A"] * 6 + ["B"] * 4 + ["C"], "target": ["T0", "T1", "T2", "T50", "T60", "OUT",
                                                                       "T70", "T71", "T72", "T73", "T3"]})
    candidates = pd.DataFrame({"token": [1, 2, 3, 4], "gene": ["a", "b", "c", "d"], "human_id": ["A", "B", "D", None]})
    table = fate_baselines.grn_overlap_scores(edges, candidates, de_set, universe).set_index("gene")
    assert table.loc["a", "targets"] == 5 and table.loc["a", "overlap"] == 3              # OUT is not measured
    assert table.loc["a", "score"] == pytest.approx(-np.log10(hypergeom.sf(2, 100, 10, 5)))
    assert table.loc["b", "overlap"] == 0 and table.loc["b", "score"] == pytest.approx(0.0)
    assert table.loc["c", "score"] == 0 and table.loc["d", "score"] == 0 and table.loc["d", "targets"] == 0


def test_human_ids_go_through_one_to_one_orthologs():
    orthologs = pd.DataFrame({"mouse_id": ["M1", "M2", "M3"], "human_id": ["H1", "H2", "H3"],
                              "homology_type": ["ortholog_one2one", "ortholog_one2many", "one2one"]})
    mapped = fate_baselines.human_ids(["M1", "M2", "M3", "M9"], "mouse", orthologs)
    assert mapped["M1"] == "H1" and mapped["M3"] == "H3" and mapped[["M2", "M9"]].isna().all()
    assert list(fate_baselines.human_ids(["H1"], "human")) == ["H1"]


def test_driver_ranks_share_tied_ranks_and_give_the_random_chance():
    rankings = {"m": pd.DataFrame({"gene": ["a", "B", "c", "d"], "score": [4.0, 2.0, 2.0, 1.0]})}
    ranks = fate_baselines.driver_ranks(rankings, ["A", "b", "zz"]).set_index("gene")
    assert ranks.loc["A", "rank"] == 1 and ranks.loc["b", "rank"] == 2.5 and np.isnan(ranks.loc["zz", "rank"])
    assert ranks.loc["b", "p_random"] == pytest.approx(2.5 / 4) and ranks.loc["A", "n"] == 4
    summary = fate_baselines.recovery_summary(ranks.reset_index())
    assert summary.loc["m", "best_rank"] == 1 and summary.loc["m", "median_rank"] == 1.75
    assert summary.loc["m", "drivers"] == 2 and summary.loc["m", "random_expected_rank"] == 2.5


def per_cell(noise: float, seed=0, n_cells=40, n_tfs=30):
    rng = np.random.default_rng(seed)
    truth = np.linspace(1, 0, n_tfs)
    rows = [(f"TF{t}", c, truth[t] + noise * rng.normal()) for t in range(n_tfs) for c in range(n_cells)]
    return pd.DataFrame(rows, columns=["gene", "cell", "goal_score"])


def test_cell_subsample_agrees_less_with_fewer_cells():
    table = fate_sensitivity.cell_subsample(per_cell(noise=1.0), [3, 30, 100], repeats=8, drivers=["TF0"], seed=1)
    median = table.groupby("n_cells")["spearman"].median()
    assert list(median.index) == [3, 30, 40]                      # 100 ≥ the 40 cells: skipped; all cells last
    assert median[3] < median[30] < median[40] == 1.0
    exact = fate_sensitivity.cell_subsample(per_cell(noise=0.0), [3], repeats=3, drivers=["TF0"])
    assert (exact["spearman"] == 1.0).all() and (exact["rank_TF0"] == 1.0).all()


def test_ranking_agreement():
    a = pd.DataFrame({"gene": ["x", "y", "z", "w"], "goal_score": [4.0, 3.0, 2.0, 1.0]})
    flipped = a.assign(goal_score=-a["goal_score"])
    assert fate_sensitivity.ranking_agreement(a, a, drivers=["x"])["spearman"] == pytest.approx(1.0)
    agreement = fate_sensitivity.ranking_agreement(a, flipped, drivers=["x"])
    assert agreement["spearman"] == pytest.approx(-1.0) and agreement["driver_ranks"]["x"] == [1.0, 4.0]
    with pytest.raises(ValueError, match="share 2 TFs"):
        fate_sensitivity.ranking_agreement(a, a.iloc[:2])


def test_edges_in_prior_rebuilds_the_prior_edges_and_checks_the_count():
    edges, _ = grn_prior.bundle_grn_edges()
    tf = edges["tf_id"].value_counts().index[0]
    heldout = pd.DataFrame({"tf": [tf], "target": [edges.loc[edges["tf_id"] == tf, "target_id"].iloc[0]],
                            "holdout": ["edge"]})
    kept, _ = grn_prior.exclude(edges, exclude_edges=heldout[["tf", "target"]], exclude_tfs=[])
    manifest = {"build_key": {"exclude_tfs": []}, "edges_used": len(kept)}
    rebuilt = grn_prior.edges_in_prior(manifest, heldout)
    assert list(rebuilt.columns) == ["tf", "target"] and len(rebuilt) == len(kept) == len(edges) - 1
    with pytest.raises(ValueError, match="rerun notebook 02"):
        grn_prior.edges_in_prior({**manifest, "edges_used": len(kept) + 1}, heldout)
