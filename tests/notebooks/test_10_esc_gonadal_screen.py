"""Notebook 10 on the ci profile: the offline cases that ran (and the one the data cannot hold), every known driver
ranked by the model and each baseline, the null's q-values, the sensitivity checks, speed, figures, and the
explorers rendered both statically and as widgets."""
import json

import numpy as np
import pandas as pd
import pytest

from gc_lib.core import paths
from gc_lib.core.profiles import get_profile

NAME = "10_esc_gonadal_screen"
METHODS = {"GeneCompass screen", "differential expression", "GRN prior ∩ DE genes"}


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed(NAME)


def test_sizes_and_cases(metrics):
    assert metrics["profile"] == "ci" and metrics["sizes"] == get_profile("ci").sizes(NAME)
    names = [case["name"] for case in metrics["cases"]]
    assert names == ["acinar → beta (human)", "alpha → beta, overexpress (human)", "alpha → beta, delete (human)",
                     "alpha → beta, overexpress (mouse)", "alpha → beta, delete (mouse)"]
    assert metrics["skipped_cases"] == [{"name": "acinar → beta (mouse)", "lacking_states": ["acinar"]}]
    for case in metrics["cases"]:
        params = case["params"]
        wanted = metrics["sizes"]["delete_start_cells" if case["kind"] == "delete" else "start_cells"]
        assert params["start_cells"] == wanted and params["pairs"] > 0 and params["null_perturbations"] > 0
        if case["kind"] == "overexpress":  # every candidate TF is screened, the unexpressed ones inserted
            assert params["screened"] == metrics["candidates"][case["species"]]


def test_every_driver_is_ranked_by_the_model_and_each_baseline(metrics):
    ranks = pd.DataFrame(metrics["driver_ranks"])
    drivers = ranks[ranks["role"] == "known driver"]
    kinds = {case["name"]: case["kind"] for case in metrics["cases"]}
    for (case, gene), rows in drivers.groupby(["case", "gene"]):
        assert set(rows["method"]) == METHODS
        if kinds[case] == "overexpress":
            assert rows["rank"].notna().all(), (case, gene)
        finite = rows.dropna(subset=["rank"])
        assert ((finite["rank"] >= 1) & (finite["rank"] <= finite["n"])).all()
        np.testing.assert_allclose(finite["p_random"], finite["rank"] / finite["n"])
    ours = drivers[(drivers["method"] == "GeneCompass screen") & drivers["rank"].notna()]
    assert ours["q_value"].between(0, 1).all()
    acinar = drivers[drivers["case"] == "acinar → beta (human)"]
    assert set(acinar["gene"]) == {"PDX1", "NEUROG3", "MAFA"}
    combos = metrics["cases"][0]["combos"]
    assert combos[0]["combination"] == "PDX1+NEUROG3+MAFA" and 0 < combos[0]["p_value"] <= 1


def test_sensitivity_checks_and_speed(metrics):
    subsample = pd.DataFrame(metrics["subsample"])
    full = subsample.groupby("case")["n_cells"].max()
    assert (subsample.loc[subsample["n_cells"].isin(full.values), "spearman"].max() == 1.0)
    assert subsample["spearman"].between(-1, 1).all()
    assert set(metrics["checks"]) == {"layer 1 vs final", "no-priors model vs main"}
    for check in metrics["checks"].values():
        assert check["shared_tfs"] == metrics["candidates"]["human"] and -1 <= check["spearman"] <= 1
    speed = metrics["speed"]
    assert speed["pairs"] == sum(case["params"]["pairs"] for case in metrics["cases"])
    assert speed["pairs_per_second"] > 0


def test_figures_and_explorers(metrics):
    for figure in ("ranked_screens", "explorer_default"):
        assert paths.figure_path(NAME, figure).exists()
    executed = json.loads((paths.BUILD_DIR / "ci" / f"{NAME}.ipynb").read_text())
    code = [cell for cell in executed["cells"] if cell["cell_type"] == "code"]
    for call in ("fate_widgets.screen_explorer(", "fate_widgets.gene_explorer("):
        cell = next(c for c in code if "".join(c["source"]).lstrip().startswith(call))
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell["outputs"]), call
    # the saved widget state is what JupyterLab restores: both dropdowns at their defaults, both outputs drawn
    state = executed["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    dropdowns = {w["state"]["description"]: w["state"] for w in state if w["model_name"] == "DropdownModel"}
    chosen = dropdowns["TF"]["_options_labels"][dropdowns["TF"]["index"]]
    assert chosen.startswith(f"{metrics['example_tf']} (rank")
    assert dropdowns["gene"]["_options_labels"][dropdowns["gene"]["index"]] == metrics["example_tf"]
    drawn = [w for w in state if w["model_name"] == "OutputModel"]
    assert len(drawn) == 2 and all(w["state"]["outputs"] for w in drawn)
    # the static explorers (what a saved notebook shows without a kernel): the TF's summary and top genes as tables,
    # the gene's neighbours as a line and a table (the figures are saved files, checked above: under the tests'
    # Agg backend plt.show() puts no image in the notebook)
    static = next(c for c in code if "fate_widgets.show_tf(" in "".join(c["source"]))
    shown = [o["data"] for o in static["outputs"] if "data" in o]
    assert sum("text/html" in d for d in shown) >= 3
    lines = ["".join(d["text/markdown"]) for d in shown if "text/markdown" in d]
    assert len(lines) == 1 and metrics["example_tf"] in "".join(lines)
    assert metrics["example_tf"] in {"PDX1", "NEUROG3", "MAFA"}
