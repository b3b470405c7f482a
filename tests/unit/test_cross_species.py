"""Cross-species annotation (gc_lib.tasks.cross_species): train on human cells, predict mouse cells, against a
logistic regression on one-to-one orthologs that learns from the human cells only."""
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from synthetic import HUMAN, MOUSE, count_cells

from gc_lib.tasks import baselines as cb
from gc_lib.tasks import cross_species as xs
from gc_lib.tasks.finetune import FinetuneConfig

#: the first 20 genes of each species are one-to-one orthologs (as in the tiny_checkpoint corpus), plus noise rows
PAIRS = pd.concat([pd.DataFrame({"mouse_id": MOUSE[:20], "human_id": HUMAN[:20], "homology_type": "one2one"}),
                   pd.DataFrame({"mouse_id": [MOUSE[20], MOUSE[21]], "human_id": [HUMAN[20], HUMAN[21]],
                                 "homology_type": "one2many"})], ignore_index=True)


def cells(genes: list[str], species: str, kinds: str, n: int, seed: int) -> ad.AnnData:
    """``n`` cells per kind: "A" expresses orthologs 1–5 highly, "B" orthologs 6–10, "C"/"D" orthologs 11–15."""
    parts = []
    for i, kind in enumerate(kinds):
        rates = np.full(len(genes), 0.5)
        start = {"A": 1, "B": 6, "C": 11, "D": 11}[kind]
        rates[start:start + 5] = 12.0
        part = count_cells(n, genes, species, seed + i, rates)
        part.obs["cell_type"] = kind
        parts.append(part)
    return ad.concat(parts, merge="same")


@pytest.fixture(scope="module")
def pair():
    human = cells(HUMAN, "human", "ABC", 30, 0)
    mouse = cells(MOUSE, "mouse", "ABD", 20, 10)
    x = mouse.X.toarray()
    x[:, 0] = np.where(np.arange(mouse.n_obs) % 2, 0, 80)                     # ortholog 0: variable in mouse only
    mouse.X = type(mouse.X)(x)
    return human, mouse


def test_shared_types_and_one_to_one_pairs(pair):
    human, mouse = pair
    h, m, shared = xs.shared_cell_types(human, mouse)
    assert shared == ["A", "B"] and set(h.obs["cell_type"]) == set(m.obs["cell_type"]) == {"A", "B"}
    assert (h.n_obs, m.n_obs) == (60, 40)
    kept = xs.one_to_one_pairs(HUMAN, MOUSE[:10], PAIRS)
    assert list(kept["mouse_id"]) == MOUSE[:10] and list(kept["human_id"]) == HUMAN[:10]
    doubled = pd.concat([PAIRS, pd.DataFrame({"mouse_id": [MOUSE[25]], "human_id": [HUMAN[3]],
                                              "homology_type": "one2one"})])
    assert HUMAN[3] not in set(xs.one_to_one_pairs(HUMAN, MOUSE, doubled)["human_id"])   # ambiguous: dropped
    with pytest.raises(ValueError, match="share no 'cell_type'"):
        xs.shared_cell_types(human[human.obs["cell_type"] == "C"], mouse)


def test_ortholog_matrix_aligns_mouse_columns_to_human_genes(pair):
    human, mouse = pair
    pairs = xs.one_to_one_pairs(HUMAN, MOUSE, PAIRS).iloc[::-1].reset_index(drop=True)
    both = xs.ortholog_matrix(human, mouse, pairs)
    assert both.shape == (human.n_obs + mouse.n_obs, 20) and list(both.var_names) == list(pairs["human_id"])
    column = list(pairs["mouse_id"]).index(MOUSE[7])
    assert np.array_equal(both.X[human.n_obs:, column].toarray().ravel(), mouse[:, MOUSE[7]].X.toarray().ravel())


def test_baseline_learns_from_human_only_and_transfers(pair):
    human, mouse = pair
    h, m, _ = xs.shared_cell_types(human, mouse)
    predicted, info = xs.ortholog_baseline(h, m, pairs=PAIRS, n_top_genes=8)
    assert info["orthologs"] == 20 and len(info["genes"]) == 8
    human_only = cb.log_normalise(h[:, HUMAN[:20]])                         # the pairs, in human-ID order
    assert info["genes"] == list(np.array(HUMAN[:20])[cb.hvg_mask(human_only, 8)])   # mouse cells chose nothing
    unchanged = m.copy()
    unchanged.X = unchanged.X.copy()
    unchanged.X[:, 0] = 1.0                                                 # no mouse-only variance at all
    assert xs.ortholog_baseline(h, unchanged, pairs=PAIRS, n_top_genes=8)[1]["genes"] == info["genes"]
    assert (predicted == m.obs["cell_type"].astype(str).to_numpy()).mean() >= 0.9
    with pytest.raises(ValueError, match="no one-to-one ortholog"):
        xs.ortholog_baseline(h, m, pairs=PAIRS.iloc[20:])


def test_cross_species_annotation_fine_tunes_on_human_and_scores_mouse(pair, tiny_checkpoint, tmp_path):
    human, mouse = pair
    config = FinetuneConfig(epochs=2, batch_size=8, patience=2, validation_fraction=0.2)
    summary, table = xs.cross_species_annotation(human, mouse, tiny_checkpoint, tmp_path / "model", config,
                                                 pairs=PAIRS, n_top_genes=8)
    assert summary["shared_cell_types"] == ["A", "B"]
    assert (summary["human_cells"], summary["mouse_cells"], summary["orthologs"]) == (60, 40, 20)
    assert list(table.columns) == ["truth", xs.GENECOMPASS, xs.BASELINE] and len(table) == 40
    assert set(table[xs.GENECOMPASS]) <= {"A", "B"} and set(table["truth"]) == {"A", "B"}
    for method, scores in summary["methods"].items():
        assert scores == cb.scores(table["truth"], table[method])
    assert summary["methods"][xs.BASELINE]["accuracy"] >= 0.9
    record = json.loads((tmp_path / "model" / "finetune.json").read_text())
    assert record["n_train"] + record["n_validation"] == 60                 # fitted on the shared human cells only
