"""The perturbation engine: token edits on hand-made cells, equality with the per-cell loop, torchrun slices."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gc_lib.model.architecture import ModelConfig, build_model
from gc_lib.tasks._perturb_loop import edit_cell, perturb_loop
from gc_lib.tasks.cell_tokens import CellTokens
from gc_lib.tasks.perturb import perturb, state_centroids
from gc_lib.tasks.perturb_edits import PerturbationSet, apply_edits, overexpression_values

HERE = Path(__file__).parent
VOCAB = 40


def edit(ids, values, genes, kind, *, factor=0.5, high=None, max_genes=8):
    """apply_edits on one cell, as Python lists (ids, values, moved_to)."""
    high = high or {}
    genes_t = torch.tensor([genes])
    code = torch.tensor([["delete", "overexpress", "knockdown"].index(kind)])
    new_ids, new_values, moved, _, _ = apply_edits(
        torch.tensor([ids]), torch.tensor([values], dtype=torch.float32), genes_t, code,
        torch.tensor([factor]), torch.tensor([[high.get(g, 0.0) for g in genes]]), max_genes)
    n = int((new_ids[0] != 0).sum())
    return new_ids[0, :n].tolist(), [round(v, 5) for v in new_values[0, :n].tolist()], moved[0].tolist()


CELL_IDS, CELL_VALUES = [10, 11, 12, 13], [4.0, 3.0, 2.0, 1.0]


def test_delete_removes_the_gene_and_moves_later_genes_up():
    ids, values, moved = edit(CELL_IDS, CELL_VALUES, [11], "delete")
    assert ids == [10, 12, 13] and values == [4.0, 2.0, 1.0]
    assert moved == [0, -1, 1, 2]


def test_overexpressing_an_expressed_gene_moves_it_to_the_top_with_at_least_the_top_value():
    ids, values, moved = edit(CELL_IDS, CELL_VALUES, [12], "overexpress", high={12: 3.5})
    assert ids == [12, 10, 11, 13] and values == [4.0, 4.0, 3.0, 1.0]   # max(3.5, top 4.0)
    assert moved == [1, 2, -1, 3]
    ids, values, _ = edit(CELL_IDS, CELL_VALUES, [12], "overexpress", high={12: 6.0})
    assert values[0] == 6.0


def test_overexpressing_an_unexpressed_gene_inserts_it_and_drops_the_last_gene_at_the_cap():
    ids, values, moved = edit(CELL_IDS, CELL_VALUES, [30], "overexpress", high={30: 5.0}, max_genes=4)
    assert ids == [30, 10, 11, 12] and values == [5.0, 4.0, 3.0, 2.0]
    assert moved == [1, 2, 3, -1]
    ids, _, _ = edit(CELL_IDS, CELL_VALUES, [30], "overexpress", high={30: 5.0}, max_genes=8)
    assert ids == [30, 10, 11, 12, 13]


def test_knockdown_scales_the_value_and_reranks_ahead_of_equal_values():
    ids, values, moved = edit(CELL_IDS, CELL_VALUES, [10], "knockdown", factor=0.5)
    assert ids == [11, 10, 12, 13] and values == [3.0, 2.0, 2.0, 1.0]
    assert moved == [-1, 0, 2, 3]                                        # a perturbed gene is not compared
    ids, values, _ = edit(CELL_IDS, CELL_VALUES, [10], "knockdown", factor=0.1)
    assert ids == [11, 12, 13, 10] and values[-1] == pytest.approx(0.4)


def test_combinations_and_absent_genes():
    ids, _, _ = edit(CELL_IDS, CELL_VALUES, [30, 31], "overexpress", high={30: 1.0, 31: 9.0})
    assert ids == [30, 31, 10, 11, 12, 13]                               # in the order given
    ids, _, _ = edit(CELL_IDS, CELL_VALUES, [10, 13, 30], "delete")
    assert ids == [11, 12]
    ids, values, _ = edit(CELL_IDS, CELL_VALUES, [30], "knockdown")
    assert ids == CELL_IDS and values == CELL_VALUES


def test_vectorised_edits_match_the_python_list_edits_on_random_cells():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 9))
        ids = rng.choice(np.arange(4, VOCAB), n, replace=False).tolist()
        values = sorted(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0], n).tolist(), reverse=True)
        genes = rng.choice(np.arange(4, VOCAB), int(rng.integers(1, 3)), replace=False).tolist()
        kind = ["delete", "overexpress", "knockdown"][trial % 3]
        high = {g: float(rng.choice([0.5, 2.0, 5.0])) for g in genes}
        got = edit(ids, values, genes, kind, high=high, max_genes=6)
        want_ids, want_values, moved = edit_cell(ids, values, genes, kind, 0.5, high, 6)
        assert got[0] == want_ids and got[1] == [round(v, 5) for v in want_values]
        assert got[2] == [moved.get(j, -1) for j in range(len(ids))]


def test_overexpression_values_take_the_quantile_and_a_fallback_for_unseen_tokens():
    ids = [np.array([5, 6]), np.array([5]), np.array([5, 7])]
    values = [np.array([1.0, 2.0]), np.array([3.0]), np.array([2.0, 4.0])]
    high = overexpression_values(ids, values, 10, quantile=1.0)
    assert high[5] == 3.0 and high[6] == 2.0 and high[7] == 4.0
    assert high[9] == 3.0 and np.isnan(high[:4]).all()                  # median of 3, 2, 4


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = ModelConfig.preset("tiny", VOCAB, d_model=32, n_heads=2, d_ff=64, max_len=12, dropout=0.0)
    return build_model(config).eval()


def random_cells(n=9, seed=1):
    rng = np.random.default_rng(seed)
    ids, values = [], []
    for _ in range(n):
        length = int(rng.integers(3, 11))
        ids.append(rng.choice(np.arange(4, 30), length, replace=False))   # tokens 30.. never expressed
        values.append(np.sort(rng.gamma(2.0, 1.0, length)).astype(np.float32)[::-1].copy())
    return CellTokens(ids, values, rng.integers(0, 2, n))


def mixed_perturbations():
    return PerturbationSet.concat([PerturbationSet.build([5, 6, [7, 8]], "delete"),
                                   PerturbationSet.build([9, 33, [34, 5]], "overexpress"),
                                   PerturbationSet.build([6, 10], "knockdown", factor=0.3)])


@pytest.mark.parametrize("pooling", ["mean", "cell"])
def test_engine_matches_the_per_cell_loop(pooling):
    model, cells, perturbations = tiny_model(), random_cells(), mixed_perturbations()
    high = overexpression_values(cells.ids, cells.values, VOCAB, quantile=0.9)
    rng = np.random.default_rng(2)
    goal, alt = rng.normal(size=32), rng.normal(size=32)
    kwargs = dict(high_values=high, pooling=pooling, goal=goal, alternatives={"other": alt})
    engine = perturb(model, cells, perturbations, batch_size=5, cell_chunk=4, progress=False, **kwargs)
    loop = perturb_loop(model, cells, perturbations, forward_batch_size=3, **kwargs)
    pd.testing.assert_frame_equal(engine.cells, loop.cells, atol=2e-5, rtol=1e-4)
    pd.testing.assert_frame_equal(engine.genes, loop.genes, atol=2e-5, rtol=1e-4, check_dtype=False)
    np.testing.assert_allclose(engine.embeddings, loop.embeddings, atol=2e-5)
    inserted = engine.cells[engine.cells["name"] == "33"]
    assert len(inserted) == len(cells) and (inserted["n_present"] == 0).all()   # a gene no cell expresses
    assert (inserted["cell_shift"] > 0).all() and np.isfinite(inserted["goal_score"]).all()
    deleted = engine.cells[engine.cells["name"] == "5"]
    assert sorted(deleted["cell"]) == [c for c in range(len(cells)) if 5 in cells.ids[c]]


def test_chunking_and_batching_do_not_change_the_results():
    model, cells, perturbations = tiny_model(), random_cells(), mixed_perturbations()
    high = overexpression_values(cells.ids, cells.values, VOCAB)
    one = perturb(model, cells, perturbations, high_values=high, batch_size=64, cell_chunk=64, progress=False)
    many = perturb(model, cells, perturbations, high_values=high, batch_size=2, cell_chunk=1, progress=False)
    pd.testing.assert_frame_equal(one.cells, many.cells, atol=2e-5, rtol=1e-4)
    pd.testing.assert_frame_equal(one.genes, many.genes, atol=2e-5, rtol=1e-4)


def test_bad_requests_are_refused():
    model, cells = tiny_model(), random_cells()
    with pytest.raises(ValueError, match="high_values"):
        perturb(model, cells, PerturbationSet.build([5], "overexpress"), progress=False)
    with pytest.raises(ValueError, match="token ids"):
        perturb(model, cells, PerturbationSet.build([VOCAB + 3], "delete"), progress=False)
    with pytest.raises(ValueError, match="kind"):
        PerturbationSet.build([5], "silence")
    with pytest.raises(ValueError, match="no cell is labelled"):
        state_centroids(np.zeros((2, 3)), ["a", "b"], ["c"])


def test_two_gloo_ranks_gather_the_same_results_as_one_process(tmp_path):
    from distributed import one_and_two_processes

    one, two = one_and_two_processes(HERE / "perturb_worker.py", tmp_path)
    assert one["world_size"] == 1 and two["world_size"] == 2
    for key in ("cells", "genes"):
        a, b = pd.DataFrame(one[key]), pd.DataFrame(two[key])
        pd.testing.assert_frame_equal(a, b, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(one["embeddings"], two["embeddings"], atol=2e-5)


def test_matched_null_draws_untested_genes_from_the_same_expression_bins():
    from gc_lib.tasks.perturb_stats import expression_bins, matched_null, mean_values

    cells = random_cells(n=30, seed=3)
    mean = mean_values(cells, VOCAB)
    bins = expression_bins(mean, np.arange(4, VOCAB), n_bins=3)
    assert (bins[30:] == 0).all() and (bins[4:30] > 0).all() and (bins[:4] == -1).all()
    tested = PerturbationSet.concat([PerturbationSet.build([5, [6, 30]], "delete"),
                                     PerturbationSet.build([31], "overexpress")])
    null, group = matched_null(tested, bins, n_null=20, seed=0)
    assert len(null) == 60 and list(group) == [0, 1, 2]
    for g, p in enumerate(range(3)):
        rows = [i for i, name in enumerate(null.names) if name.startswith(f"null:{g}:")]
        want = [bins[x] for x in tested.genes[p] if x >= 0]
        for i in rows:
            genes = [x for x in null.genes[i] if x >= 0]
            assert [bins[x] for x in genes] == want and not {5, 6, 30, 31} & set(genes)
            assert null.kind[i] == tested.kind[p]


def test_pvalues_find_the_real_effect_and_not_the_random_one():
    from scipy.stats import false_discovery_control

    from gc_lib.tasks.perturb_stats import perturbation_pvalues

    rng = np.random.default_rng(0)
    tested = pd.DataFrame({"perturbation": np.repeat([0, 1, 2], 20),
                           "cell_shift": np.r_[rng.normal(1.0, 0.1, 20), rng.normal(0.1, 0.1, 40)]})
    null = pd.DataFrame({"name": [f"null:0:{i}" for i in range(99) for _ in range(20)],
                         "cell_shift": rng.normal(0.1, 0.1, 99 * 20)})
    table = perturbation_pvalues(tested, null, np.array([0, 0, 0]), "cell_shift", names=["real", "r1", "r2"])
    assert table.loc[0, "p_value"] == pytest.approx(1 / 100)            # beyond every null perturbation
    assert table.loc[1:, "p_value"].min() > 0.01
    np.testing.assert_allclose(table["q_value"], false_discovery_control(table["p_value"]))
    less = perturbation_pvalues(tested, null, np.array([0, 0, 0]), "cell_shift", alternative="less")
    assert less.loc[0, "p_value"] == pytest.approx(1.0)


def test_the_engine_and_its_null_on_a_model_built_to_react_to_one_gene():
    """A model whose first attention layer looks only at token 7: deleting 7 must move the cells that hold it far
    more than deleting random genes of matched expression, and deleting gene 8 must not."""
    from gc_lib.tasks.perturb_stats import expression_bins, matched_null, mean_values, perturbation_pvalues

    model, cells = attending_to_token_7(), random_cells(n=40, seed=4)
    bins = expression_bins(mean_values(cells, VOCAB), np.arange(4, 30), n_bins=1)
    tested = PerturbationSet.build([7, 8], "delete")
    null, group = matched_null(tested, bins, n_null=19, seed=1)
    high = overexpression_values(cells.ids, cells.values, VOCAB)
    run = perturb(model, cells, PerturbationSet.concat([tested, null]), high_values=high, progress=False)
    real = run.cells[run.cells["perturbation"] < 2]
    table = perturbation_pvalues(real, run.cells[run.cells["perturbation"] >= 2], group, "cell_shift",
                                 names=tested.names)
    assert table.loc[0, "p_value"] == pytest.approx(1 / 20)
    assert table.loc[1, "p_value"] > 0.05


def attending_to_token_7():
    """tiny_model with token 7's embedding enlarged and block 0's queries and keys set so that every query's
    attention goes to the token whose normalised input lies along token 7's direction, and what it reads there
    dominates every state."""
    model = tiny_model()
    d = model.config.d_model
    with torch.no_grad():
        model.genes.ids.weight[7] *= 5000                                 # outweighs the rank embedding
        cell = torch.tensor([[7, 9, 11]])
        x = model.blocks[0].norm1(model.embed_tokens(cell, torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([0])))
        direction = torch.nn.functional.normalize(x[0, 1], dim=0)
        qkv = model.blocks[0].qkv
        qkv.weight[:2 * d] = 0
        qkv.bias[:2 * d] = 0
        qkv.bias[:d] = 1.0                                               # every query the same
        qkv.weight[d:2 * d] = 10 * torch.outer(torch.ones(d), direction)  # keys: alignment with token 7
        model.blocks[0].out.weight *= 100                                 # what is read there dominates
    return model

