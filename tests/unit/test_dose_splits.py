"""Conditions, the out-of-distribution dose splits and the baselines, on a small plate whose answers are known by hand,
and the metrics on profiles whose scores are known."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest

from gc_lib.tasks.dose_metrics import METRICS, condition_scores, score_predictions
from gc_lib.tasks.dose_splits import (
    BASELINES,
    condition_means,
    held_out,
    held_out_drugs,
    predict_baseline,
)
from gc_lib.tasks.seed_summary import paired_differences, summarise, winners

KEYS = {"drug_key": "drug", "dose_key": "dose", "control_value": "DMSO"}
DOSES = [0.1, 1.0, 10.0]


def linear_plate() -> ad.AnnData:
    """2 genes; drug a adds (log10 dose + 2) × [1, −1], drug b adds 3 × [1, 1] at every dose; 2 wells per condition
    (±0.5 noise that cancels in the mean); 4 DMSO wells at [5, 5] ± 1."""
    rows, obs = [], []
    for drug in ("a", "b"):
        for dose in DOSES:
            effect = (np.log10(dose) + 2) * np.array([1.0, -1.0]) if drug == "a" else np.array([3.0, 3.0])
            for noise in (0.5, -0.5):
                rows.append(5 + effect + noise)
                obs.append((drug, dose))
    for noise in (1, -1, 1, -1):
        rows.append(np.array([5.0, 5.0]) + noise)
        obs.append(("DMSO", np.nan))
    frame = pd.DataFrame(obs, columns=["drug", "dose"], index=[f"w{i}" for i in range(len(obs))])
    return ad.AnnData(np.asarray(rows, dtype=np.float32), obs=frame)


@pytest.fixture()
def conditions():
    return condition_means(linear_plate(), **KEYS)


def test_condition_means_average_wells_and_keep_controls_apart(conditions):
    assert conditions.table[["drug", "dose"]].values.tolist() == [[d, x] for d in "ab" for x in DOSES]
    assert (conditions.table["n_wells"] == 2).all()
    np.testing.assert_allclose(conditions.means[2], [5 + 3, 5 - 3])  # drug a at 10: log10 10 + 2 = 3
    np.testing.assert_allclose(conditions.control_mean, [5, 5])
    np.testing.assert_allclose(conditions.control_sd, [np.sqrt(4 / 3)] * 2)


def test_splits_hold_out_the_highest_and_the_middle_dose_of_each_drug(conditions):
    table = conditions.table
    assert table.loc[held_out(table, "highest"), "dose"].tolist() == [10.0, 10.0]
    assert table.loc[held_out(table, "middle"), "dose"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown split"):
        held_out(table, "lowest")


def test_held_out_drugs_takes_whole_drugs_and_never_all(conditions):
    mask = held_out_drugs(conditions.table, 0.5, seed=3)
    assert conditions.table.loc[mask, "drug"].nunique() == 1 and mask.sum() == 3
    assert held_out_drugs(conditions.table, 0.99).sum() == 3  # one drug stays for training
    with pytest.raises(ValueError, match="fraction"):
        held_out_drugs(conditions.table, 1.5)


def test_baselines_on_the_highest_dose(conditions):
    test = held_out(conditions.table, "highest")
    got = {name: predict_baseline(name, conditions, test) for name in BASELINES}
    np.testing.assert_allclose(got["control_mean"], [[5, 5], [5, 5]])
    np.testing.assert_allclose(got["drug_mean"], [[5 + 1.5, 5 - 1.5], [8, 8]])      # a: mean of 1 and 2
    np.testing.assert_allclose(got["nearest_dose"], [[5 + 2, 5 - 2], [8, 8]])       # dose 1
    np.testing.assert_allclose(got["log_dose_linear"], [[5 + 3, 5 - 3], [8, 8]])    # exact: a is linear in log dose
    np.testing.assert_allclose(got["dose_mean"], [[5 + 1.5, 5 - 1.5], [8, 8]][::-1])  # the other drug's training mean


def test_baselines_on_the_middle_dose_interpolate(conditions):
    test = held_out(conditions.table, "middle")
    np.testing.assert_allclose(predict_baseline("log_dose_linear", conditions, test), [[7, 3], [8, 8]])
    np.testing.assert_allclose(predict_baseline("nearest_dose", conditions, test), [[6, 4], [8, 8]])  # tie: lower
    with pytest.raises(ValueError, match="unknown baseline"):
        predict_baseline("oracle", conditions, test)


def test_condition_means_reject_missing_controls_and_doses():
    plate = linear_plate()
    with pytest.raises(ValueError, match="control wells"):
        condition_means(plate, drug_key="drug", dose_key="dose", control_value="vehicle")
    plate.obs.loc["w0", "dose"] = -1.0
    with pytest.raises(ValueError, match="no positive dose"):
        condition_means(plate, **KEYS)
    with pytest.raises(ValueError, match="no column 'conc'"):
        condition_means(plate, drug_key="drug", dose_key="conc", control_value="DMSO")


def test_metrics_of_a_perfect_a_scaled_and_a_null_prediction():
    rng = np.random.default_rng(0)
    control, sd = rng.normal(8, 1, 200), np.ones(200)
    true = control + rng.normal(0, 1, 200)
    perfect = condition_scores(true, true, control, sd)
    assert perfect == {"r2_all": 1.0, "r2_de20": 1.0, "pearson_delta": pytest.approx(1.0), "precision_up": 1.0,
                       "precision_down": 1.0}
    half = condition_scores(true, control + 0.5 * (true - control), control, sd)
    assert half["pearson_delta"] == pytest.approx(1.0) and half["precision_up"] == 1.0 and half["r2_de20"] < 1
    null = condition_scores(true, control, control, sd)
    assert np.isnan(null["pearson_delta"]) and np.isnan(null["precision_up"]) and null["r2_all"] < 1
    flipped = condition_scores(true, control - (true - control), control, sd, k=10)
    assert flipped["precision_up"] == 0.0 and flipped["pearson_delta"] == pytest.approx(-1.0)


def test_de_genes_come_from_the_truth_scaled_by_control_sd():
    control, sd = np.zeros(30), np.ones(30)
    sd[0] = 100.0                       # gene 0 moves most in raw units but little in control SDs
    true = np.zeros(30)
    true[0], true[1:21] = 50.0, np.linspace(1.0, 2.0, 20)
    pred = true.copy()
    pred[0] = 0.0                       # wrong only on gene 0, which is not a DE gene
    assert condition_scores(true, pred, control, sd)["r2_de20"] == pytest.approx(1.0)


def test_summaries_average_within_seed_then_over_seeds_and_name_winners():
    conditions = pd.DataFrame({"drug": ["a", "b"], "dose": [1.0, 1.0]})
    rng = np.random.default_rng(1)
    control, sd = np.zeros(50), np.ones(50)
    truth = rng.normal(0, 1, (2, 50))
    frames = []
    for seed, noise in enumerate([0.1, 0.3]):
        pred = truth + rng.normal(0, noise, truth.shape)
        frames.append(score_predictions(truth, pred, conditions, control, sd).assign(method="m", seed=seed))
    frames.append(score_predictions(truth, np.zeros_like(truth) + 0.01, conditions, control, sd)
                  .assign(method="flat", seed=0))
    scores = pd.concat(frames, ignore_index=True)
    summary = summarise(scores, ["method"], METRICS)
    m = summary.set_index("method").loc["m"]
    per_seed = scores[scores["method"] == "m"].groupby("seed")["r2_all"].mean()
    assert m["r2_all_mean"] == pytest.approx(per_seed.mean()) and m["r2_all_sd"] == pytest.approx(per_seed.std())
    assert m["n_seeds"] == 2 and summary.set_index("method").loc["flat", "r2_all_sd"] == 0
    best = winners(summary.assign(split="x"), "method", within=["split"], metrics=METRICS).set_index("metric")
    assert best.loc["r2_all", "winner"] == "m"
    with pytest.raises(ValueError, match="lack columns"):
        summarise(scores.drop(columns="seed"), ["method"], METRICS)


def test_lower_is_better_metrics_win_low_and_count_as_ahead_when_lower():
    summary = pd.DataFrame({"split": "x", "method": ["a", "b"], "mse_mean": [1.0, 2.0], "mse_sd": 0.0})
    assert winners(summary, "method", within=["split"], metrics=["mse"], lower_is_better=["mse"])["winner"][0] == "a"
    assert winners(summary, "method", within=["split"], metrics=["mse"])["winner"][0] == "b"
    scores = pd.DataFrame({"split": "x", "method": "m", "variant": ["ref", "other"] * 2, "seed": [0, 0, 1, 1],
                           "mse": [1.0, 2.0, 3.0, 2.5]})
    paired = paired_differences(scores, "ref", ["other"], metrics=["mse"], lower_is_better=["mse"])
    assert paired.loc[0, "seeds_ahead"] == 1 and paired.loc[0, "mean"] == pytest.approx(-0.25)
