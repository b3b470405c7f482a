"""The cell-fate screen: measuring at an earlier layer, candidate TFs, sampling, and run_screen's ranking, null and
combinations against direct engine calls on a tiny random model."""
import numpy as np
import pandas as pd
import pytest
import torch

from gc_lib.corpus.vocab import build_vocabulary
from gc_lib.model.architecture import ModelConfig, build_model
from gc_lib.tasks import fate_screen
from gc_lib.tasks.cell_tokens import CellTokens, collate
from gc_lib.tasks.embedding import encode_cells, pool, stop_block
from gc_lib.tasks.fate_screen import ScreenCase, run_screen
from gc_lib.tasks.perturb import perturb, state_centroids
from gc_lib.tasks.perturb_edits import PerturbationSet, overexpression_values

VOCAB = 48


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = ModelConfig.preset("tiny", VOCAB, d_model=32, n_heads=2, d_ff=64, max_len=16, dropout=0.0)
    return build_model(config).eval()


def state_cells(seed=1):
    """12 cells of three states; tokens 4..29 are expressed, 30.. never are (what an overexpression inserts)."""
    rng = np.random.default_rng(seed)
    ids, values, labels = [], [], []
    for state, shift in (("start", 0), ("goal", 8), ("other", 16)):
        for _ in range(4):
            length = int(rng.integers(5, 10))
            pool_ = np.arange(4 + shift, 14 + shift) if state != "start" else np.arange(4, 20)
            ids.append(rng.choice(pool_, length, replace=False))
            values.append(np.sort(rng.gamma(2.0, 1.0, length)).astype(np.float32)[::-1].copy())
            labels.append(state)
    return CellTokens(ids, values, np.zeros(len(ids), dtype=np.int64)), np.array(labels)


def candidates(tokens):
    return pd.DataFrame({"token": tokens, "gene_id": [f"G{t}" for t in tokens], "gene": [f"TF{t}" for t in tokens]})


def test_stop_block_and_layer_measure_the_states_after_that_many_blocks():
    model = tiny_model()
    assert model.config.n_layers == 2
    assert stop_block(model, None) is None and stop_block(model, 2) is None and stop_block(model, 1) == 1
    for bad in (0, 3):
        with pytest.raises(ValueError, match="layer must lie in 1..2"):
            stop_block(model, bad)
    cells, _ = state_cells()
    batch = collate(cells, np.arange(len(cells)), pad_id=model.config.pad_id)
    with torch.no_grad():
        hidden = model.encode_from(model.embed_tokens(batch["input_ids"], batch["values"], batch["species"]),
                                   batch["attention_mask"], stop_block=1)
    expected = pool(hidden, batch["attention_mask"], "mean").numpy()
    encoded, _, _ = encode_cells(model, cells, pooling="mean", gene_embeddings=False, layer=1)
    np.testing.assert_allclose(encoded, expected, atol=1e-5)
    result = perturb(model, cells, PerturbationSet.build([30], "overexpress"), progress=False, layer=1,
                     high_values=overexpression_values(cells.ids, cells.values, VOCAB))
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-5)
    final = perturb(model, cells, PerturbationSet.build([30], "overexpress"), progress=False,
                    high_values=overexpression_values(cells.ids, cells.values, VOCAB))
    assert not np.allclose(final.cells["cell_shift"], result.cells["cell_shift"])


def screen(kind="overexpress", combos=(), n_null=4, min_cells=1):
    model, (cells, labels) = tiny_model(), state_cells()
    case = ScreenCase("start → goal", "human", "start", "goal", ("other",), kind, drivers=("TF31",),
                      controls=("TF32",), combos=combos)
    tokens = [5, 6, 7, 30, 31, 32, 33] if kind == "overexpress" else [4, 5, 6, 7, 8, 9, 30]
    high = overexpression_values(cells.ids, cells.values, VOCAB)
    result = run_screen(model, cells, labels, case, candidates(tokens), high_values=high,
                        species_tokens=np.arange(4, VOCAB), n_null=n_null, n_bins=2, min_cells=min_cells,
                        batch_size=7, progress=False)
    return model, cells, labels, case, high, result


def test_run_screen_ranks_every_candidate_by_its_mean_goal_score_like_the_engine():
    model, cells, labels, case, high, result = screen(combos=(("TF30", "TF31"),))
    table = result.table
    assert len(table) == 7 and sorted(table["rank"]) == list(range(1, 8))
    assert (np.diff(table["goal_score"].to_numpy()) <= 0).all()          # best first
    assert (table["n_cells"] == 4).all()                                  # an overexpression reaches every start cell
    # the same numbers straight from the engine, with centroids of the goal and the alternative state
    embedded, _, _ = encode_cells(model, cells.subset(labels != "start"), pooling="mean", gene_embeddings=False)
    centroid = state_centroids(embedded, labels[labels != "start"], ["goal", "other"])
    direct = perturb(model, cells.subset(labels == "start"), PerturbationSet.build(
        list(table["token"]), "overexpress", names=list(table["gene"])), high_values=high, goal=centroid["goal"],
        alternatives={"other": centroid["other"]}, progress=False)
    means = direct.cells.groupby("name")["goal_score"].mean()
    np.testing.assert_allclose(table.set_index("gene")["goal_score"], means.reindex(table["gene"]), atol=1e-6)
    assert set(table.loc[table["role"] == "known driver", "gene"]) == {"TF31"}
    assert set(table.loc[table["role"] == "negative control", "gene"]) == {"TF32"}
    assert table["p_value"].between(1 / 5, 1).all() and table["q_value"].between(0, 1).all()
    assert result.params["null_perturbations"] > 0 and set(result.cells["gene"]) == set(table["gene"])
    assert len(result.cells) == 7 * 4 and result.null_cells["name"].str.startswith("null:").all()
    assert list(result.combos["combination"]) == ["TF30+TF31"] and result.combos["n_cells"].iloc[0] == 4
    assert set(result.genes["token"]) <= set(table["token"])


def test_a_deletion_screen_keeps_only_tfs_enough_start_cells_hold():
    _, cells, labels, _, _, result = screen(kind="delete", min_cells=2)
    held = fate_screen.expressed_in(cells.subset(labels == "start"), [4, 5, 6, 7, 8, 9, 30], VOCAB)
    kept = {f"TF{t}" for t, n in zip([4, 5, 6, 7, 8, 9, 30], held) if n >= 2}
    assert set(result.table["gene"]) == kept and "TF30" not in kept
    assert (result.table["n_cells"] >= 2).all()


def test_a_screen_without_null_ranks_only():
    *_, result = screen(n_null=0)
    assert result.null_cells.empty and "p_value" not in result.table and result.params["null_perturbations"] == 0


def test_screen_errors_name_the_problem():
    with pytest.raises(ValueError, match="overexpresses or deletes"):
        ScreenCase("x", "human", "a", "b", kind="knockdown")
    with pytest.raises(ValueError, match="must differ"):
        ScreenCase("x", "human", "a", "b", ("a",))
    model, (cells, labels) = tiny_model(), state_cells()
    case = ScreenCase("nowhere → goal", "human", "nowhere", "goal")
    with pytest.raises(ValueError, match="no cell is labelled 'nowhere'"):
        run_screen(model, cells, labels, case, candidates([30]), high_values=None, species_tokens=np.arange(4, 48))
    with pytest.raises(ValueError, match="combination genes \\['TF99'\\]"):
        screen(combos=(("TF30", "TF99"),))


def test_candidate_tfs_are_the_tokens_of_that_species():
    genes = pd.DataFrame({"gene_id": ["ENSG01", "ENSG02", "ENSMUSG01", "ENSG03"],
                          "species": ["human", "human", "mouse", "human"], "symbol": ["A", "B", "a", "C"]})
    vocab = build_vocabulary(genes)
    tfs = pd.DataFrame({"gene_id": ["ENSG02", "ENSG03", "ENSG09", "ENSMUSG01"],
                        "species": ["human", "human", "human", "mouse"], "symbol": ["B", "C", "Z", "a"]})
    table = fate_screen.candidate_tfs(vocab, "human", tfs)
    assert list(table["gene"]) == ["B", "C"] and list(table["token"]) == list(vocab.encode(["ENSG02", "ENSG03"]))
    assert list(fate_screen.candidate_tfs(vocab, "mouse", tfs)["gene_id"]) == ["ENSMUSG01"]
    with pytest.raises(ValueError, match="none of the 1 human TFs"):
        fate_screen.candidate_tfs(vocab, "human", tfs[tfs["gene_id"] == "ENSG09"])


def test_sample_cells_draws_up_to_n_per_state_reproducibly():
    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"] * 5)
    rows = fate_screen.sample_cells(labels, {"a": 4, "b": None, "c": 9}, seed=3)
    assert (labels[rows] == "a").sum() == 4 and (labels[rows] == "b").sum() == 3 and (labels[rows] == "c").sum() == 5
    assert list(rows) == sorted(rows) and list(rows) == list(fate_screen.sample_cells(labels, {"a": 4, "b": None,
                                                                                               "c": 9}, seed=3))
    with pytest.raises(ValueError, match="no cell is labelled 'd'"):
        fate_screen.sample_cells(labels, {"d": 2})
