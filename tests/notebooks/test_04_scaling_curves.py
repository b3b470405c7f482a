"""Notebook 04 on the ci profile: nested fractions × two model sizes, power-law fits, a downstream number."""
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


def test_fits_and_downstream_numbers_are_finite(metrics):
    for fit in [*metrics["power_law_corpus"].values(), metrics["power_law_parameters"]]:
        assert np.isfinite(fit["exponent"]) and fit["a"] > 0
    for run in metrics["runs"]:
        assert 0 <= run["macro_f1"] <= 1 and np.isfinite(run["best_eval_loss"])
    assert 0.3 < metrics["baseline_pca"]["macro_f1"] <= 1  # the PCA baseline of pbmc68k labels is far from chance
    assert paths.figure_path("04_scaling_curves", "scaling").exists()
