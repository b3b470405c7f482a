"""Notebook 09 on the ci profile: sizes from the profile table, documented labels, coverage, the sampled cells,
the N-fold AUC of every method."""
import numpy as np
import pandas as pd
import pytest

from gc_lib.core import paths
from gc_lib.core.profiles import get_profile


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("09_dosage_sensitivity")


def test_sizes_come_from_the_profile_table(metrics):
    assert metrics["profile"] == "ci" and metrics["sizes"] == get_profile("ci").sizes("09_dosage_sensitivity")
    # at most cells_per_gene cells per kept gene, pooled: never more than that many in all, nor than the corpus
    cap = metrics["sizes"]["cells_per_gene"] * metrics["kept_genes"]["total"]
    assert 0 < metrics["sampled_cells"] <= min(cap, metrics["corpus_cells"])


def test_labels_and_coverage_are_reported(metrics):
    assert set(metrics["labels"]["by_label"]) == {"sensitive", "insensitive"}
    coverage = metrics["coverage"]
    assert coverage["labelled"] >= coverage["in_vocabulary"] >= coverage["expressed"] == metrics["kept_genes"]["total"]
    kept = metrics["kept_genes"]
    assert kept["sensitive"] >= metrics["n_folds"] and kept["insensitive"] >= metrics["n_folds"]


def test_every_method_has_a_cross_validated_auc(metrics):
    methods = {m["method"]: m for m in metrics["methods"]}
    expected = {"fine-tuned GeneCompass", "priors, no pretraining", "contextual embeddings + logistic regression",
                "expression statistics + logistic regression",
                *(f"{p} prior + logistic regression" for p in ("grn", "promoter", "family", "coexpression"))}
    assert set(methods) == expected
    for row in methods.values():
        assert row["folds"] == metrics["n_folds"] and 0 <= row["auc_mean"] <= 1
        assert row["auc_mean"] == pytest.approx(np.mean(row["auc_per_fold"]))


def test_out_of_fold_scores_cover_every_kept_gene(metrics):
    scores = pd.read_parquet(paths.notebook_data_dir("09_dosage_sensitivity") / "out_of_fold_scores.parquet")
    assert len(scores) == metrics["kept_genes"]["total"] and scores["ensembl_id"].is_unique
    assert sorted(scores["fold"].unique()) == list(range(metrics["n_folds"]))
    assert paths.figure_path("09_dosage_sensitivity", "roc").exists()
