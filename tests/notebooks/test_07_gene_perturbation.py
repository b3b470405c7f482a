"""Notebook 07 on the ci profile: a simulation labelled as such on held-out edges no prior saw, GEARS's simulation
split for every method, the baselines, the linear model with each gene embedding and GEARS's three variants scored
per kind of test perturbation, and the figure."""
import numpy as np
import pandas as pd
import pytest

from gc_lib.core import paths
from gc_lib.core.profiles import get_profile
from gc_lib.tasks.perturbseq_metrics import METRICS

METHODS = {"no_change", "training_mean", "additive", "linear [pca]", "linear [genecompass]", "linear [random]",
           "GEARS (published)", "GEARS (init) [genecompass]", "GEARS (similarity_graph) [genecompass]"}


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("07_gene_perturbation")


def test_the_simulation_is_labelled_and_leak_free(metrics):
    assert metrics["profile"] == "ci" and metrics["sizes"] == get_profile("ci").sizes("07_gene_perturbation")
    assert metrics["simulated"] is True and "SIMULATED" in metrics["data"]
    network = metrics["network"]
    assert network["edges_in_grn_prior"] == 0 and network["regulators_in_grn_prior"] == 0
    assert 0 < network["genes"] <= metrics["sizes"]["sim_genes"] and metrics["genes"] == network["genes"]
    assert metrics["conditions"] == metrics["sizes"]["sim_singles"] + metrics["sizes"]["sim_doubles"]


def test_every_method_is_scored_on_every_split_seed(metrics):
    kinds = pd.DataFrame(metrics["split_kinds"])
    assert set(kinds["seed"]) == set(metrics["sizes"]["split_seeds"]) and len(metrics["sizes"]["split_seeds"]) >= 3
    summary = pd.DataFrame(metrics["summary"])
    assert METHODS <= set(summary["label"])
    coverage = pd.DataFrame(metrics["coverage"]).set_index("variant")
    share = coverage["perturbed_genes_covered"] / coverage["perturbed_genes"]
    assert set(metrics["variants_left_out"]) == set(share.index[share < 0.5])
    assert "prior:grn" in metrics["variants_left_out"]          # held-out TFs have no GRN vector, by construction
    kept = {f"linear [{v}]" for v in share.index[share >= 0.5]}
    assert kept <= set(summary["label"]) and not {f"linear [{v}]" for v in metrics["variants_left_out"]} & set(
        summary["label"])
    test_kinds = set(kinds.loc[kinds["part"] == "test", "kind"])
    assert set(summary["kind"]) == test_kinds
    for kind in test_kinds:
        seeds_with_kind = kinds[(kinds["part"] == "test") & (kinds["kind"] == kind)]["seed"].nunique()
        assert (summary.loc[summary["kind"] == kind, "n_seeds"] == seeds_with_kind).all(), kind
    learned = summary[~summary["label"].isin(["no_change"])]
    assert learned["pearson_delta_mean"].dropna().between(-1, 1).all()
    assert (summary["mse_de20_mean"] >= 0).all() and (summary["l2_top1000_mean"] >= 0).all()
    assert np.isnan(summary.loc[summary["label"] == "no_change", "pearson_delta_mean"]).all()


def test_winners_pairs_and_figure(metrics):
    winners = pd.DataFrame(metrics["winners"])
    assert set(winners["metric"]) == set(METRICS)
    paired = pd.DataFrame(metrics["paired"])
    assert {"genecompass − pca", "genecompass − random", "GEARS (init) − GEARS (published)",
            "GEARS (similarity_graph) − GEARS (published)"} <= set(paired["comparison"])
    assert (paired["seeds_ahead"] <= paired["n_seeds"]).all()
    assert paths.figure_path("07_gene_perturbation", "scores").exists()
