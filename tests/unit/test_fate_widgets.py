"""The cell-fate screen explorers (gc_lib.tasks.fate_widgets) on a small synthetic screen and random embeddings."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from gc_lib.tasks import fate_widgets as fw  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def screen_data():
    """Five TFs: PDX1 and MAFA are known drivers, GAPDH a negative control; rank by goal_score."""
    gene = ["PDX1", "MAFA", "SOX9", "GAPDH", "HES1"]
    goal = [0.9, 0.5, 0.1, -0.05, -0.3]
    screen = pd.DataFrame({"token": [10, 11, 12, 13, 14], "gene": gene, "rank": [1, 2, 3, 4, 5], "goal_score": goal,
                           "p_value": [0.001, 0.01, 0.2, 0.6, 0.9], "q_value": [0.005, 0.025, 0.33, 0.75, 0.9],
                           "n_cells": 20, "role": ["known driver", "known driver", "", "negative control", ""]})
    screen = screen.sample(frac=1, random_state=0)  # row order must not matter
    rng = np.random.default_rng(0)
    cells = pd.DataFrame([{"token": t, "cell": c, "goal_score": g + rng.normal(0, 0.1), "toward_goal": g}
                          for t, g in zip(range(10, 15), goal) for c in range(20)])
    genes = pd.DataFrame({"token": [10] * 4 + [11] * 2, "gene": ["INS", "NKX6-1", "GCG", "KRT19", "INS", "SST"],
                          "mean_shift": [0.8, 0.5, -0.9, 0.1, 0.3, 0.2], "n_cells": 20})
    return screen, cells, genes


def test_tf_summary_rank_and_top_genes(screen_data):
    screen, cells, genes = screen_data
    summary, top = fw.tf_summary(screen, genes, "PDX1", k=3)
    assert (summary["rank"], summary["n_tfs"], summary["token"], summary["n_cells"]) == (1, 5, 10, 20)
    assert summary["goal_score"] == pytest.approx(0.9) and summary["q_value"] == pytest.approx(0.005)
    assert top["gene"].tolist() == ["GCG", "INS", "NKX6-1"]  # by |mean_shift|, sign kept
    assert top["mean_shift"].tolist() == [-0.9, 0.8, 0.5] and top["rank"].tolist() == [1, 2, 3]
    by_token, _ = fw.tf_summary(screen, genes, 11)
    assert (by_token["gene"], by_token["rank"]) == ("MAFA", 2)
    _, none = fw.tf_summary(screen, genes, "HES1")
    assert none.empty


@pytest.mark.parametrize("tf", ["NOPE", 99])
def test_unknown_tf_raises(screen_data, tf):
    screen, cells, genes = screen_data
    with pytest.raises(ValueError, match="not in the screen"):
        fw.tf_summary(screen, genes, tf)


def test_plot_ranked_screen_marks_drivers_and_controls(screen_data):
    screen, _, _ = screen_data
    fig = fw.plot_ranked_screen(screen, title="acinar → beta")
    ax = fig.axes[0]
    texts = {t.get_text() for t in ax.texts}
    assert texts == {"PDX1 (#1)", "MAFA (#2)", "GAPDH (#4)"}
    assert any(np.allclose(line.get_ydata(), 0) and line.get_linestyle() == ":" for line in ax.lines)
    assert ax.get_title() == "acinar → beta"


def test_show_tf_draws_two_panels(screen_data):
    screen, cells, genes = screen_data
    null = pd.DataFrame({"goal_score": np.random.default_rng(1).normal(0, 0.1, 200)})
    fig = fw.show_tf(screen, cells, genes, "MAFA", null_cells=null, k=5)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["random matched null", "MAFA"]
    assert [t.get_text() for t in right.get_yticklabels()] == ["SST", "INS"]
    assert "rank 2 of 5" in fig._suptitle.get_text()


def _brute_force(table, gene_id, k):
    x = table.to_numpy(float)
    norms = np.linalg.norm(x, axis=1)
    q = x[table.index.get_loc(gene_id)]
    cos = {g: x[i] @ q / (norms[i] * np.linalg.norm(q)) for i, g in enumerate(table.index)
           if g != gene_id and norms[i] > 0}
    return sorted(cos.items(), key=lambda kv: -kv[1])[:k]


@pytest.fixture
def tables():
    rng = np.random.default_rng(2)
    ids = [f"G{i}" for i in range(30)]
    a = pd.DataFrame(rng.normal(size=(30, 8)), index=ids)
    b = pd.DataFrame(rng.normal(size=(25, 5)), index=ids[5:])  # lacks G0..G4
    b.loc["G7"] = 0.0  # a zero row
    return {"input": a, "prior": b}


def test_nearest_genes_matches_brute_force(tables):
    symbols = pd.Series({f"G{i}": f"SYM{i}" for i in range(30)})
    near = fw.nearest_genes(tables, "G9", k=6, symbols=symbols)
    assert list(near.columns) == ["source", "rank", "gene_id", "symbol", "cosine"]
    assert near.attrs["missing"] == []
    for source, table in tables.items():
        mine = near[near["source"] == source]
        expected = _brute_force(table, "G9", 6)
        assert mine["gene_id"].tolist() == [g for g, _ in expected]
        np.testing.assert_allclose(mine["cosine"], [c for _, c in expected])
        assert mine["rank"].tolist() == list(range(1, 7))
        assert mine["symbol"].tolist() == ["SYM" + g[1:] for g, _ in expected]
    assert "G9" not in set(near["gene_id"]) and near["cosine"].notna().all()
    assert "G7" not in set(near.loc[near["source"] == "prior", "gene_id"])  # the zero row is dropped


def test_nearest_genes_missing_and_zero_query(tables):
    near = fw.nearest_genes(tables, "G2", k=40)
    assert near.attrs["missing"] == ["prior"] and set(near["source"]) == {"input"}
    assert len(near) == 29 and near["symbol"].tolist() == near["gene_id"].tolist()
    zero = fw.nearest_genes(tables, "G7", k=3)  # the zero vector has no direction: treated as missing
    assert zero.attrs["missing"] == ["prior"] and len(zero) == 3
    nowhere = fw.nearest_genes(tables, "ABSENT")
    assert nowhere.empty and nowhere.attrs["missing"] == ["input", "prior"]


def test_show_gene_neighbours_wide_table(tables):
    wide = fw.show_gene_neighbours(tables, "G3", k=4)
    assert list(wide.columns) == ["input"] and wide.index.tolist() == [1, 2, 3, 4]
    best, cos = _brute_force(tables["input"], "G3", 1)[0]
    assert wide.loc[1, "input"] == f"{best} ({cos:.2f})"
    assert wide.attrs["missing"] == ["prior"]


def _record(monkeypatch, name):
    """Replace fate_widgets.<name> with a recorder (Output captures display only inside a kernel)."""
    calls = []
    monkeypatch.setattr(fw, name, lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_screen_explorer_redraws_on_change(screen_data, monkeypatch):
    screen, cells, genes = screen_data
    calls = _record(monkeypatch, "show_tf")
    box = fw.screen_explorer(screen, cells, genes, default_tf="MAFA", k=4)
    (tf_box, k_box), out = box.children[0].children, box.children[1]
    assert out.__class__.__name__ == "Output"
    assert [label for label, _ in tf_box.options][:2] == ["PDX1 (rank 1)", "MAFA (rank 2)"]
    assert len(calls) == 1 and calls[-1][0][3] == 11 and calls[-1][1]["k"] == 4
    tf_box.value = 13  # GAPDH
    assert len(calls) == 2 and calls[-1][0][3] == 13
    assert fw.tf_summary(screen, genes, calls[-1][0][3])[0]["gene"] == "GAPDH"
    k_box.value = 7
    assert len(calls) == 3 and calls[-1][0][3] == 13 and calls[-1][1]["k"] == 7


def test_screen_explorer_real_redraw_shows_new_tf(screen_data, capsys):
    screen, cells, genes = screen_data
    box = fw.screen_explorer(screen, cells, genes, default_tf="PDX1")
    box.children[0].children[0].value = 14  # HES1
    assert "HES1" in capsys.readouterr().out  # outside a kernel, display() prints the summary table


def test_gene_explorer_redraws_on_change(tables, monkeypatch):
    calls = _record(monkeypatch, "show_gene_neighbours")
    symbols = pd.Series({"G3": "THREE", "G8": "EIGHT"})
    box = fw.gene_explorer(tables, ["G3", "G8", "G12"], default_gene="G3", k=5, symbols=symbols)
    gene_box, k_box = box.children[0].children
    assert [label for label, _ in gene_box.options] == ["THREE", "EIGHT", "G12"]
    assert calls[-1][0][1] == "G3" and calls[-1][1]["k"] == 5
    gene_box.value = "G8"
    assert len(calls) == 2 and calls[-1][0][1] == "G8" and calls[-1][1]["symbols"] is symbols



EXPLORER_CELLS = ["""
import matplotlib; matplotlib.use("Agg")
import pandas as pd
from gc_lib.tasks import fate_widgets as fw
screen = pd.DataFrame({"token": [10, 11], "gene": ["PDX1", "HES1"], "rank": [1, 2], "goal_score": [0.9, 0.1],
                       "p_value": 0.1, "q_value": 0.2, "n_cells": 3, "role": ["known driver", ""]})
cells = pd.DataFrame({"token": [10, 10, 11, 11], "cell": [0, 1, 0, 1], "goal_score": [0.9, 0.8, 0.1, 0.0],
                      "toward_goal": 0.5})
genes = pd.DataFrame({"token": [10, 11], "gene": ["INS", "KRT19"], "mean_shift": [0.5, 0.4], "n_cells": 2})
box = fw.screen_explorer(screen, cells, genes, default_tf="PDX1")
box
""", "box.children[0].children[0].value = 11"]


def test_screen_explorer_redraws_its_output_in_a_live_kernel():
    """What a JupyterLab user does: pick another TF in the dropdown; the Output widget must then hold that TF's
    summary and top genes. An Output widget is filled by the front end, so this runs a kernel under nbclient (which
    plays the front end's part, as papermill does) and reads the widget state it saves, as JupyterLab would."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in EXPLORER_CELLS])
    NotebookClient(notebook, kernel_name="python3", timeout=120, store_widget_state=True).execute()
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    (output,) = [w["state"]["outputs"] for w in state if w["model_name"] == "OutputModel"]
    shown = str(output)
    assert "HES1" in shown and "KRT19" in shown and "INS" not in shown   # redrawn for the new TF only
    (dropdown,) = [w["state"] for w in state if w["model_name"] == "DropdownModel"]
    assert dropdown["_options_labels"][dropdown["index"]] == "HES1 (rank 2)"
