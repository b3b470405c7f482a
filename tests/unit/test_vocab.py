"""The token vocabulary (gc_lib.corpus.vocab): token order, version stripping, duplicates, orthologs, encode/decode,
the vocab.json round trip, tamper detection, species validation and the hash."""
import json

import numpy as np
import pandas as pd
import pytest

from gc_lib.corpus.vocab import SPECIAL_TOKENS, Vocabulary, build_vocabulary, strip_version

H1, H2, H3 = "ENSG00000000001", "ENSG00000000002", "ENSG00000000003"
M1, M2, M3 = "ENSMUSG00000000001", "ENSMUSG00000000002", "ENSMUSG00000000003"


def gene_table():
    # deliberately unsorted and interleaved, with a versioned ID and a duplicate (the first symbol must win)
    return pd.DataFrame({
        "gene_id": [M2, f"{H3}.7", M1, H1, f"{H3}.2", H2, M3],
        "species": ["mouse", "human", "mouse", "human", "human", "human", "mouse"],
        "symbol": ["Mb", "HC", "Ma", "HA", "HC_dup", "HB", "Mc"],
    })


ORTHOLOGS = pd.DataFrame({
    "mouse_id": [M1, M2, M2],   # M2 twice: the first partner is kept
    "human_id": [H1, H2, H3],
    "homology_type": ["ortholog_one2one", "ortholog_one2many", "ortholog_one2many"],
})


@pytest.fixture
def vocab():
    return build_vocabulary(gene_table(), ORTHOLOGS)


def null_to_none(frame):
    return frame.astype(object).where(frame.notna(), None)


def test_special_tokens_come_first(vocab):
    assert SPECIAL_TOKENS == ("<pad>", "<mask>", "<human>", "<mouse>")
    assert vocab.tokens[:4] == ["<pad>", "<mask>", "<human>", "<mouse>"]
    assert (vocab.pad_id, vocab.mask_id) == (0, 1)
    assert vocab.species_token_id("human") == 2
    assert vocab.species_token_id("mouse") == 3


def test_human_sorted_then_mouse_sorted(vocab):
    assert vocab.tokens[4:] == [H1, H2, H3, M1, M2, M3]
    assert len(vocab) == 10
    assert vocab.genes.index.tolist() == list(range(4, 10))
    assert vocab.genes["species"].tolist() == ["human"] * 3 + ["mouse"] * 3


def test_version_suffix_stripped_and_duplicates_keep_first(vocab):
    assert strip_version(["ENSG00000000003.7", "ENSMUSG00000000001", "ENSG00000000002.10"]).tolist() == \
        [H3, M1, H2]
    assert vocab.genes.loc[6, "gene_id"] == H3
    assert vocab.genes.loc[6, "symbol"] == "HC"  # not "HC_dup"
    assert vocab.genes["gene_id"].is_unique


def test_mouse_genes_carry_human_orthologs(vocab):
    g = vocab.genes.set_index("gene_id")
    assert g.loc[M1, "human_ortholog"] == H1
    assert g.loc[M1, "homology_type"] == "ortholog_one2one"
    assert g.loc[M2, "human_ortholog"] == H2  # first listed partner
    assert g.loc[M2, "homology_type"] == "ortholog_one2many"
    assert pd.isna(g.loc[M3, "human_ortholog"]) and pd.isna(g.loc[M3, "homology_type"])
    assert g.loc[[H1, H2, H3], "human_ortholog"].isna().all()
    assert g.loc[[H1, H2, H3], "homology_type"].isna().all()


def test_human_genes_get_no_ortholog_even_if_listed():
    # a human ID wrongly listed in the mouse column must not give a human gene an ortholog
    orthologs = pd.DataFrame({"mouse_id": [H1], "human_id": [H2], "homology_type": ["ortholog_one2one"]})
    vocab = build_vocabulary(gene_table(), orthologs)
    assert vocab.genes.set_index("gene_id")["human_ortholog"].isna().all()


def test_without_orthologs_every_ortholog_is_empty():
    vocab = build_vocabulary(gene_table())
    assert vocab.genes["human_ortholog"].isna().all()
    assert vocab.genes["homology_type"].isna().all()


def test_encode(vocab):
    ids = vocab.encode([M3, H1, "ENSG00000000002.5", "ENSG00000099999", "TP53", M1])
    assert ids.dtype == np.int32
    assert ids.tolist() == [9, 4, 5, -1, -1, 7]


def test_decode(vocab):
    assert vocab.decode([4, 5, 6, 7, 8, 9]) == ["HA", "HB", "HC", "Ma", "Mb", "Mc"]
    assert vocab.decode(np.array([9, 4]), symbols=False) == [M3, H1]
    assert vocab.decode([0, 1, 2, 3]) == list(SPECIAL_TOKENS)
    genes = [H2, M1, H3]
    assert vocab.decode(vocab.encode(genes), symbols=False) == genes


def test_save_load_round_trip(vocab, tmp_path):
    path = vocab.save(tmp_path / "vocab.json")
    assert path == tmp_path / "vocab.json"
    doc = json.loads(path.read_text())
    assert doc["hash"] == vocab.hash
    assert doc["gene_id"] == [H1, H2, H3, M1, M2, M3]
    loaded = Vocabulary.load(path)
    assert loaded.hash == vocab.hash
    assert loaded.tokens == vocab.tokens
    pd.testing.assert_frame_equal(null_to_none(loaded.genes), null_to_none(vocab.genes))
    assert loaded.encode([M2, H3]).tolist() == [8, 6]
    assert loaded.decode([7]) == ["Ma"]


@pytest.mark.parametrize("column, index, value", [
    ("gene_id", 0, "ENSG00000000009"),
    ("gene_id", 4, M1),                 # swapped order
    ("species", 0, "mouse"),
])
def test_tampered_file_is_rejected(vocab, tmp_path, column, index, value):
    path = vocab.save(tmp_path / "vocab.json")
    doc = json.loads(path.read_text())
    assert doc[column][index] != value
    doc[column][index] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="corrupted"):
        Vocabulary.load(path)


def test_other_format_is_rejected(vocab, tmp_path):
    path = vocab.save(tmp_path / "vocab.json")
    doc = json.loads(path.read_text())
    doc["format"] = "something/2"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not a gc_lib.vocab/1 vocabulary"):
        Vocabulary.load(path)


def test_unknown_species_is_rejected(vocab):
    genes = gene_table()
    genes.loc[2, "species"] = "zebrafish"
    with pytest.raises(ValueError, match="unknown species.*zebrafish"):
        build_vocabulary(genes)
    with pytest.raises(ValueError, match="unknown species"):
        vocab.species_token_id("rat")


def test_missing_columns_are_rejected():
    with pytest.raises(ValueError, match="lacks columns.*symbol"):
        build_vocabulary(gene_table().drop(columns="symbol"))


def test_hash_is_stable_and_sensitive(vocab):
    # the same genes in another input order give the same tokens, hence the same hash
    shuffled = gene_table().iloc[[6, 0, 3, 1, 5, 2, 4]]
    same = build_vocabulary(shuffled, ORTHOLOGS)
    assert same.tokens == vocab.tokens
    assert same.hash == vocab.hash
    assert len(vocab.hash) == 64
    # another order of the same genes
    reordered = vocab.genes.iloc[[1, 0, 2, 3, 4, 5]].reset_index(drop=True)
    reordered.index = vocab.genes.index
    assert Vocabulary(reordered).hash != vocab.hash
    # the same IDs with another species
    flipped = vocab.genes.copy()
    flipped.loc[4, "species"] = "mouse"
    assert Vocabulary(flipped).tokens == vocab.tokens
    assert Vocabulary(flipped).hash != vocab.hash
    # one gene fewer
    assert Vocabulary(vocab.genes.iloc[:-1]).hash != vocab.hash


def test_decode_refuses_ids_outside_the_vocabulary():
    vocab = build_vocabulary(pd.DataFrame({"gene_id": ["ENSG00000000001"], "species": ["human"], "symbol": ["A"]}))
    with pytest.raises(ValueError, match="encode"):
        vocab.decode(vocab.encode(["ENSG00000099999"]))
    with pytest.raises(ValueError, match="token ids"):
        vocab.decode([len(vocab)])


def test_versioned_ortholog_ids_are_linked():
    genes = pd.DataFrame({"gene_id": ["ENSG00000000001", "ENSMUSG00000000001"], "species": ["human", "mouse"],
                          "symbol": ["A", "a"]})
    orthologs = pd.DataFrame({"mouse_id": ["ENSMUSG00000000001.3"], "human_id": ["ENSG00000000001.7"],
                              "homology_type": ["one2one"]})
    vocab = build_vocabulary(genes, orthologs)
    assert vocab.genes.set_index("gene_id").at["ENSMUSG00000000001", "human_ortholog"] == "ENSG00000000001"
