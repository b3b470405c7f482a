"""In-silico deletion turned into scored edges, and the TF explorer's table and plot."""
import matplotlib
import numpy as np
import pandas as pd

from gc_lib.corpus.vocab import build_vocabulary
from gc_lib.tasks.deletion import deletion_perturbations, deletion_scores
from gc_lib.tasks.grn_widgets import plot_tf_network, show_tf, top_targets
from gc_lib.tasks.perturb import PerturbResult

matplotlib.use("Agg")
HUMAN = [f"ENSG{i:011d}" for i in range(1, 7)]


def vocab():
    genes = pd.DataFrame({"gene_id": HUMAN + ["ENSMUSG00000000001"], "species": ["human"] * 6 + ["mouse"],
                          "symbol": [f"G{i}" for i in range(1, 7)] + ["m1"]})
    return build_vocabulary(genes)


def test_deletions_name_tfs_and_scores_keep_human_targets_seen_in_enough_cells():
    v = vocab()
    perturbations = deletion_perturbations(v, [HUMAN[0], "ENSG99999999999", HUMAN[1]])
    assert perturbations.names == [HUMAN[0], HUMAN[1]] and perturbations.genes[:, 0].tolist() == [4, 5]
    genes = pd.DataFrame({"perturbation": [0, 0, 0, 1], "name": [HUMAN[0], HUMAN[0], HUMAN[0], HUMAN[1]],
                          "token": [6, 7, 10, 6], "mean_shift": [0.3, 0.1, 0.9, 0.2], "n_cells": [5, 1, 5, 3]})
    result = PerturbResult(pd.DataFrame(), genes, np.zeros((0, 2)))
    scores = deletion_scores(result, v, min_cells=2)
    assert scores[["tf", "target"]].values.tolist() == [[HUMAN[0], HUMAN[2]], [HUMAN[1], HUMAN[2]]]  # mouse 10 out
    assert scores["score"].tolist() == [0.3, 0.2] and scores["n_cells"].tolist() == [5, 3]


def test_top_targets_marks_held_out_and_prior_edges_and_the_plot_draws():
    scores = pd.DataFrame({"tf": ["T"] * 4 + ["U"], "target": ["a", "b", "c", "d", "a"],
                           "score": [0.9, 0.8, 0.7, 0.1, 1.0]})
    held = pd.DataFrame({"tf": ["T", "U"], "target": ["b", "c"]})
    prior = pd.DataFrame({"tf": ["T"], "target": ["a"]})
    table = top_targets(scores, "T", k=3, heldout=held, prior_edges=prior, symbols=pd.Series({"a": "A"}))
    assert table["target"].tolist() == ["a", "b", "c"] and table["symbol"].tolist() == ["A", "b", "c"]
    assert table["status"].tolist() == ["in the prior", "held out", ""]
    fig = plot_tf_network(table, "T")
    assert len(fig.axes[0].texts) == 4
    assert show_tf({"m": scores}, "U", "m", k=2) is not None
