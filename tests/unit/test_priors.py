"""Prior tables: alignment to the vocabulary, ortholog transfer, storage, reuse, and clear errors."""
import json

import numpy as np
import pandas as pd
import pytest

from gc_lib.corpus.vocab import SPECIAL_TOKENS, build_vocabulary
from gc_lib.priors.store import (
    align_to_vocab,
    build_or_load,
    coverage,
    load_prior,
    load_priors,
    save_prior,
    standardise,
)

H = [f"ENSG{i:011d}" for i in range(1, 6)]
M = [f"ENSMUSG{i:011d}" for i in range(1, 5)]


@pytest.fixture
def vocab():
    genes = pd.DataFrame({"gene_id": H + M, "species": ["human"] * 5 + ["mouse"] * 4,
                          "symbol": [f"h{i}" for i in range(5)] + [f"m{i}" for i in range(4)]})
    orthologs = pd.DataFrame({"mouse_id": M[:3], "human_id": [H[0], H[1], H[4]],
                              "homology_type": ["one2one", "one2many", "one2one"]})
    return build_vocabulary(genes, orthologs)


@pytest.fixture
def human():
    # H[4] has no vector: its one2one mouse partner M[2] must then get none either
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(4, 3)).astype(np.float32), index=H[:4])


def row(vocab, gene_id):
    return int(vocab.encode([gene_id])[0])


def test_human_rows_are_their_own_vectors_and_specials_are_empty(vocab, human):
    table = align_to_vocab("grn", human, vocab)
    assert table.vectors.shape == (len(vocab), 3) and table.vectors.dtype == np.float32
    for gene_id in H[:4]:
        np.testing.assert_array_equal(table.vectors[row(vocab, gene_id)], human.loc[gene_id].to_numpy())
        assert table.mask[row(vocab, gene_id)]
    assert not table.mask[: len(SPECIAL_TOKENS)].any() and not table.vectors[: len(SPECIAL_TOKENS)].any()
    assert not table.mask[row(vocab, H[4])] and not table.vectors[row(vocab, H[4])].any()


def test_mouse_tokens_take_their_one2one_orthologs_vector(vocab, human):
    table = align_to_vocab("grn", human, vocab)
    np.testing.assert_array_equal(table.vectors[row(vocab, M[0])], human.loc[H[0]].to_numpy())
    assert not table.mask[row(vocab, M[1])]          # one2many: not transferred by default
    assert not table.mask[row(vocab, M[2])]          # partner H[4] has no vector
    assert not table.mask[row(vocab, M[3])]          # no ortholog
    anyway = align_to_vocab("grn", human, vocab, orthology="any")
    np.testing.assert_array_equal(anyway.vectors[row(vocab, M[1])], human.loc[H[1]].to_numpy())


def test_coverage_counts_genes_per_species(vocab, human):
    table = align_to_vocab("grn", human, vocab)
    assert table.info["coverage"] == {"human": {"covered": 4, "genes": 5, "fraction": 0.8},
                                      "mouse": {"covered": 1, "genes": 4, "fraction": 0.25}}
    assert coverage(table.mask, vocab) == table.info["coverage"]


def test_resource_without_overlap_is_a_clear_error(vocab):
    symbols = pd.DataFrame(np.ones((2, 3)), index=["GATA4", "NR5A1"])
    with pytest.raises(ValueError, match="none of its 2 genes .*GATA4.* human Ensembl gene IDs"):
        align_to_vocab("family", symbols, vocab)
    with pytest.raises(ValueError, match="listed twice"):
        align_to_vocab("family", pd.DataFrame(np.ones((2, 3)), index=[H[0], H[0]]), vocab)
    with pytest.raises(ValueError, match="orthology"):
        align_to_vocab("family", pd.DataFrame(np.ones((1, 3)), index=[H[0]]), vocab, orthology="some")


def test_save_load_round_trip_and_vocabulary_check(vocab, human, tmp_path):
    table = align_to_vocab("promoter", human, vocab, info={"substitute": True})
    manifest = json.loads(save_prior(table, human, vocab, tmp_path).read_text())
    assert manifest["substitute"] is True and manifest["vocab_hash"] == vocab.hash
    assert set(manifest["files"]) == {"tensors", "human"}
    loaded = load_prior(tmp_path, "promoter", vocab)
    np.testing.assert_array_equal(loaded.vectors, table.vectors)
    np.testing.assert_array_equal(loaded.mask, table.mask)
    other = build_vocabulary(pd.DataFrame({"gene_id": H, "species": "human", "symbol": list("abcde")}))
    with pytest.raises(ValueError, match="another vocabulary"):
        load_prior(tmp_path, "promoter", other)
    with pytest.raises(FileNotFoundError, match="no prior 'grn'"):
        load_priors(tmp_path, vocab)                  # grn was never written
    assert set(load_priors(tmp_path, vocab, names=("promoter",))) == {"promoter"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp debris


def test_build_or_load_reuses_only_an_identical_build(vocab, human, tmp_path):
    calls = []

    def build():
        calls.append(1)
        return align_to_vocab("grn", human, vocab), human

    _, _, reused = build_or_load(tmp_path, "grn", vocab, {"dim": 3}, build)
    assert not reused
    table, vectors, reused = build_or_load(tmp_path, "grn", vocab, {"dim": 3}, build)
    assert reused and len(calls) == 1
    np.testing.assert_array_equal(vectors.to_numpy(), human.to_numpy())
    _, _, reused = build_or_load(tmp_path, "grn", vocab, {"dim": 4}, build)
    assert not reused and len(calls) == 2
    _, _, reused = build_or_load(tmp_path, "grn", vocab, {"dim": 4}, build, force=True)
    assert not reused and len(calls) == 3


def test_standardise_centres_and_normalises():
    raw = pd.DataFrame(np.random.default_rng(1).normal(3.0, 2.0, size=(50, 4)))
    out = standardise(raw)
    np.testing.assert_allclose(np.linalg.norm(out.to_numpy(), axis=1), 1.0, rtol=1e-5)
    assert np.abs(out.to_numpy().mean(axis=0)).max() < 0.2
