"""Notebook 06 on the ci profile: held-out ground truth kept out of the prior, choices made on validation TFs only,
every method scored on the same pairs of the test TFs, in-silico deletion against its baselines."""
import pandas as pd
import pytest

from gc_lib.core import paths
from gc_lib.core.profiles import get_profile


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("06_grn_inference")


def test_sizes_and_ground_truth_are_leak_free(metrics):
    assert metrics["profile"] == "ci" and metrics["sizes"] == get_profile("ci").sizes("06_grn_inference")
    assert metrics["heldout_in_prior"] == 0
    for name, part in metrics["parts"].items():
        assert part["positives_seen_by_prior"] == 0, name
        assert part["positives"] > 0 and part["tfs_with_positives"] >= 1, name
    edge_tfs = metrics["parts"]["edge/validation"]["tfs"] + metrics["parts"]["edge/test"]["tfs"]
    assert edge_tfs <= metrics["scored_tfs"]


def test_the_model_and_coexpression_variants_are_chosen_on_validation_and_reported_on_test(metrics):
    for holdout in ("edge", "tf"):
        validation = pd.DataFrame(metrics["validation"][holdout]).set_index("method")
        chosen = metrics["chosen"][holdout]
        genecompass = [m for m in validation.index if m.startswith("GeneCompass")]
        assert chosen["GeneCompass"] == validation.loc[genecompass, "auprc"].idxmax()
        test = pd.DataFrame(metrics["test"][holdout]).set_index("method")
        assert set(test.index[test["role"] == "chosen on validation"]) == set(chosen.values())
        assert {"GRNBoost2", "GRN prior vectors", "random"} <= set(test.index)
        assert test["auprc"].between(0, 1).all() and test["auroc"].between(0, 1).all()
        assert test["n_pairs"].nunique() == 1                                  # every method on the same pairs


def test_random_scores_look_random(metrics):
    for holdout in ("edge", "tf"):
        random = pd.DataFrame(metrics["test"][holdout]).set_index("method").loc["random"]
        assert 0.35 < random["auroc"] < 0.65, (holdout, random["auroc"])


def test_in_silico_deletion_is_scored_beside_its_baselines(metrics):
    deletion = metrics["deletion"]
    assert len(deletion["tfs"]) >= 3 and deletion["pairs"] > 0
    pooled = pd.DataFrame(deletion["pooled"]).set_index("method")
    assert {"in-silico deletion (GeneCompass)", "random"} <= set(pooled.index)
    assert pooled["n_pairs"].nunique() == 1
    at_k = pd.DataFrame(deletion["precision_at_k"]).set_index("method")
    assert at_k.drop(columns="k/N (positive rate), mean over TFs").stack().between(0, 1).all()
    for figure in ("grn_test", "deletion", "explorer_default"):
        assert paths.figure_path("06_grn_inference", figure).exists(), figure


def test_deleted_tfs_are_tested_against_matched_random_deletions(metrics):
    deletion = metrics["deletion"]
    table = pd.DataFrame(deletion["significance"])
    assert len(table) == len(deletion["tfs"]) and deletion["null_perturbations"] > 0
    assert table["p_value"].between(0, 1).all() and (table["q_value"] >= table["p_value"] - 1e-12).all()
    assert (table["n_null"] == metrics["sizes"]["deletion_null"]).all()
