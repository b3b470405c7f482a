"""gene2vec: pair handling, random walks, determinism, and that related genes end up close."""
import numpy as np
import pandas as pd
import pytest

from gc_lib.priors.gene2vec import Gene2VecConfig, canonical_pairs, embed_pairs, pairs_within_groups, random_walks
from gc_lib.priors.signal import cosine, group_signal, nearest_neighbours, pair_signal


def two_cliques(n=12):
    groups = pd.DataFrame({"gene_id": [f"A{i}" for i in range(n)] + [f"B{i}" for i in range(n)],
                           "group": ["a"] * n + ["b"] * n})
    bridge = pd.DataFrame({"a": ["A0"], "b": ["B0"]})  # one link so the walk graph is connected
    return groups, pd.concat([pairs_within_groups(groups), bridge], ignore_index=True)


def test_canonical_pairs_are_undirected_unique_and_sorted():
    out = canonical_pairs(pd.DataFrame({"a": ["y", "x", "x", "z"], "b": ["x", "y", "x", "w"]}))
    assert out.to_dict(orient="list") == {"a": ["w", "x"], "b": ["z", "y"]}


def test_pairs_within_groups_caps_large_groups():
    groups = pd.DataFrame({"gene_id": [f"g{i}" for i in range(30)] + ["x", "y"], "group": ["big"] * 30 + ["s"] * 2})
    pairs = pairs_within_groups(groups, max_pairs_per_group=50, seed=0)
    assert len(pairs) == 51 and ((pairs["a"] == "x") & (pairs["b"] == "y")).sum() == 1


def test_walks_only_step_along_edges():
    _, pairs = two_cliques(5)
    edges = {tuple(sorted(p)) for p in canonical_pairs(pairs).to_numpy().tolist()}
    walks = random_walks(canonical_pairs(pairs), walks_per_gene=3, walk_length=8, seed=1)
    assert len(walks) == 3 * 10 and all(len(w) == 8 for w in walks)
    assert all(tuple(sorted(step)) in edges for w in walks for step in zip(w, w[1:]))


@pytest.mark.parametrize("method", ["walks", "pairs"])
def test_members_of_a_clique_are_closer_than_across_cliques(method):
    groups, pairs = two_cliques()
    config = Gene2VecConfig(dim=16, method=method, epochs=50 if method == "pairs" else 5, seed=0)
    vectors = embed_pairs(pairs, config)
    within = cosine(vectors, [f"A{i}" for i in range(1, 6)], [f"A{i}" for i in range(6, 11)]).mean()
    across = cosine(vectors, [f"A{i}" for i in range(1, 6)], [f"B{i}" for i in range(6, 11)]).mean()
    assert within > across + 0.3
    summary, samples = group_signal(vectors, groups.assign(group=groups["group"]), n_random=2_000)
    assert summary["auc"] > 0.7 and summary["p_value"] < 1e-3 and set(samples["kind"]) == {"related", "random"}


def test_same_seed_same_vectors_other_seed_other_vectors():
    _, pairs = two_cliques()
    config = Gene2VecConfig(dim=8, seed=3)
    first, again = embed_pairs(pairs, config), embed_pairs(pairs.sample(frac=1, random_state=5), config)
    pd.testing.assert_frame_equal(first, again)  # row order of the input does not matter
    other = embed_pairs(pairs, Gene2VecConfig(dim=8, seed=4))
    assert not np.array_equal(first.to_numpy(), other.to_numpy())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="columns 'a' and 'b'"):
        embed_pairs(pd.DataFrame({"x": ["a"], "y": ["b"]}))
    with pytest.raises(ValueError, match="no gene pairs"):
        embed_pairs(pd.DataFrame({"a": ["g"], "b": ["g"]}))
    with pytest.raises(ValueError, match="method"):
        Gene2VecConfig(method="node2vec")


def test_pair_signal_is_chance_for_random_vectors_and_neighbours_skip_self():
    rng = np.random.default_rng(0)
    vectors = pd.DataFrame(rng.normal(size=(300, 16)), index=[f"g{i}" for i in range(300)])
    related = pd.DataFrame({"a": [f"g{i}" for i in range(0, 200, 2)], "b": [f"g{i}" for i in range(1, 200, 2)]})
    summary, _ = pair_signal(vectors, related, n_random=5_000)
    assert 0.4 < summary["auc"] < 0.6
    with pytest.raises(ValueError, match="related pairs"):
        pair_signal(vectors, pd.DataFrame({"a": ["x"], "b": ["y"]}))
    table = nearest_neighbours(vectors, {"first": "g0", "absent": "nope"}, pd.Series({"g1": "ONE"}), k=3)
    assert "g0 " not in table.loc[0, "neighbours"] and table.loc[0, "neighbours"].count(",") == 2
    assert table.loc[1, "neighbours"] == "(not covered by this prior)"
