"""Notebook 04 on the ci profile: nested fractions × two model sizes, each trained a fixed number of epochs over its
own fraction, compute reported, last-step held-out loss (no selection), power-law fits, notebook 05's protocol
downstream."""
import math

import numpy as np
import pytest

from gc_lib.core import paths


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("04_scaling_curves")


def test_grid_of_runs_over_nested_fractions_and_sizes(metrics):
    runs = metrics["runs"]
    sizes = {r["size"] for r in runs}
    assert len(sizes) >= 2 and len(runs) == len(sizes) * len(metrics["fractions"])
    cells = [metrics["train_cells"][str(f)] for f in sorted(metrics["fractions"])]
    assert cells == sorted(cells) and cells[0] < cells[-1]
    params = {r["size"]: r["parameters"] for r in runs}
    assert params[max(sizes)] > params[min(sizes)]


def test_every_point_trains_fixed_epochs_over_its_own_fraction_and_reports_compute(metrics):
    epochs, cap, batch = metrics["epochs"], metrics["max_steps"], metrics["batch_size"]
    for run in metrics["runs"]:
        cells = metrics["train_cells"][str(run["fraction"])]
        expected = min(cap, math.ceil(epochs * cells / batch))
        assert run["steps"] == expected == metrics["steps"][str(run["fraction"])]
        assert run["capped"] == (expected == cap)
        assert run["cells_seen"] <= run["steps"] * batch
        if not run["capped"]:
            assert run["epochs_seen"] >= epochs * 0.95          # the whole fraction was seen `epochs` times
        assert run["train_flops"] == 6 * run["parameters"] * run["tokens_seen"] > 0
    per_fraction = {}
    for run in metrics["runs"]:
        per_fraction.setdefault(run["size"], []).append((run["fraction"], run["tokens_seen"]))
    for points in per_fraction.values():                          # more data, more compute
        tokens = [t for _, t in sorted(points)]
        assert tokens == sorted(tokens) and tokens[0] < tokens[-1]


def test_reported_loss_is_the_last_step_and_fits_are_finite(metrics):
    assert "last step" in metrics["reported_loss"] and "no selection" in metrics["reported_loss"]
    for run in metrics["runs"]:
        log = (paths.notebook_data_dir("04_scaling_curves") / run["run"] / "log.csv").read_text().splitlines()
        header, rows = log[0].split(","), [r.split(",") for r in log[1:]]
        last_eval = [r for r in rows if r[header.index("split")] == "eval"][-1]
        assert int(last_eval[header.index("step")]) == run["steps"]
        assert float(last_eval[header.index("loss")]) == pytest.approx(run["eval_loss"])
    for fit in [*metrics["power_law_corpus"].values(), metrics["power_law_parameters"]]:
        assert np.isfinite(fit["exponent"]) and fit["a"] > 0


def test_downstream_uses_the_shared_protocol_and_baselines(metrics):
    assert len(metrics["split_seeds"]) >= 3 and 0 < metrics["test_fraction"] < 1
    for run in metrics["runs"]:
        assert 0 <= run["macro_f1_mean"] <= 1 and 0 <= run["accuracy_mean"] <= 1 and np.isfinite(run["macro_f1_std"])
    baselines = {b["method"]: b for b in metrics["baselines"]}
    assert set(baselines) == {"logistic regression (log-normalised HVGs)", "kNN (PCA of log-normalised HVGs)"}
    assert all(b["seeds"] == len(metrics["split_seeds"]) for b in baselines.values())
    assert baselines["logistic regression (log-normalised HVGs)"]["macro_f1_mean"] > 0.4   # far from chance
    assert paths.figure_path("04_scaling_curves", "scaling").exists()
