"""Notebook 08 on the ci profile: the real L1000 plate, both held-out-dose splits, every baseline and both models with
every gene-vector variant on the same conditions, summaries over seeds, the embedding ablation and the figures."""
import numpy as np
import pandas as pd
import pytest

from gc_lib.core import paths
from gc_lib.core.profiles import get_profile
from gc_lib.tasks.dose_metrics import METRICS
from gc_lib.tasks.dose_splits import BASELINES, SPLITS

VARIANTS = {"genecompass", "prior:grn", "prior:promoter", "prior:family", "prior:coexpression", "random", "none"}


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("08_drug_response")


def test_real_plate_and_held_out_conditions(metrics):
    assert metrics["profile"] == "ci" and metrics["sizes"] == get_profile("ci").sizes("08_drug_response")
    assert "real data" in metrics["data"] and metrics["wells"] == 377 and metrics["genes"] == 978
    assert metrics["held_out"] == {"highest": 59, "middle": 59} and metrics["conditions"] == 351
    assert 0 < metrics["noise_ceiling"]["r2_all"] < 1
    assert metrics["unseen_drugs"] is None                                   # the plate carries no SMILES


def test_every_method_and_variant_is_summarised_over_its_seeds(metrics):
    summary = pd.DataFrame(metrics["summary"])
    assert set(metrics["variants"]) == VARIANTS
    coverage = pd.DataFrame(metrics["coverage"]).set_index("variant")
    assert coverage.loc["genecompass", "share_covered"] > 0.9 and coverage.loc["none", "genes_covered"] == 0
    n_seeds = metrics["sizes"]["seeds"]
    for split in SPLITS:
        mine = summary[summary["split"] == split]
        baselines = mine[mine["variant"] == "-"]
        assert set(baselines["method"]) == set(BASELINES) and (baselines["n_seeds"] == 1).all()
        for model in ("CPA-style", "DeepCE-style"):
            runs = mine[mine["method"] == model]
            assert set(runs["variant"]) == VARIANTS and (runs["n_seeds"] == n_seeds).all()
    finite = summary[summary["method"] != "control_mean"]
    assert np.isfinite(finite[[f"{m}_mean" for m in METRICS]].to_numpy()).all()
    assert finite[["precision_up_mean", "precision_down_mean"]].stack().between(0, 1).all()
    assert summary["r2_all_mean"].max() <= 1 and summary["pearson_delta_mean"].abs().max() <= 1


def test_winners_ablation_and_figures(metrics):
    winners = pd.DataFrame(metrics["winners"])
    assert set(winners["split"]) == set(SPLITS) and set(winners["metric"]) == set(METRICS)
    paired = pd.DataFrame(metrics["paired"])
    assert set(paired["comparison"]) == {"genecompass − random", "genecompass − none"}
    assert (paired["n_seeds"] == metrics["sizes"]["seeds"]).all()
    assert paired["seeds_ahead"].between(0, metrics["sizes"]["seeds"]).all()
    for figure in ("scores", "dose_curves"):
        assert paths.figure_path("08_drug_response", figure).exists(), figure
