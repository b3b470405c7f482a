"""Fixed gene vectors per source for the drug-response models: rows in the order asked, zeros (and a coverage count)
where a source has no vector."""
import numpy as np
import pandas as pd
import pytest
from synthetic import HUMAN

from gc_lib.corpus.vocab import Vocabulary
from gc_lib.model.architecture import load_model
from gc_lib.priors.store import PriorTable, save_prior
from gc_lib.tasks.gene_embeddings import input_gene_embeddings
from gc_lib.tasks.gene_vectors import gene_vector_variants

UNKNOWN = "ENSG99999999999"


@pytest.fixture(scope="module")
def model_and_vocab(tiny_checkpoint):
    return load_model(tiny_checkpoint).eval(), Vocabulary.load(tiny_checkpoint / "vocab.json")


def test_every_source_in_the_order_asked_with_coverage(model_and_vocab, tmp_path):
    model, vocab = model_and_vocab
    human = pd.DataFrame(np.arange(12, dtype=np.float32).reshape(4, 3), index=[HUMAN[3], HUMAN[1], "ENSG00000000077",
                                                                               HUMAN[9]])
    table = PriorTable("grn", np.zeros((len(vocab), 3), np.float32), np.zeros(len(vocab), bool))
    save_prior(table, human, vocab, tmp_path)
    genes = [HUMAN[1], UNKNOWN, HUMAN[3], HUMAN[5]]
    variants, coverage = gene_vector_variants(genes, model=model, vocab=vocab, prior_dir=tmp_path, priors=("grn",),
                                              seed=4)
    assert list(variants) == ["genecompass", "prior:grn", "random", "none"] and variants["none"] is None
    tokens = vocab.encode([HUMAN[1], HUMAN[3], HUMAN[5]])
    expected = input_gene_embeddings(model, tokens)
    np.testing.assert_allclose(variants["genecompass"][[0, 2, 3]], expected, atol=1e-6)
    assert not variants["genecompass"][1].any()                                 # no token: a zero row
    np.testing.assert_array_equal(variants["prior:grn"], [[3, 4, 5], [0, 0, 0], [0, 1, 2], [0, 0, 0]])
    assert variants["random"].shape == (4, model.config.d_model)
    again, _ = gene_vector_variants(genes, model=model, vocab=vocab, seed=4)
    np.testing.assert_array_equal(again["random"], variants["random"])
    covered = coverage.set_index("variant")["genes_covered"].to_dict()
    assert covered == {"genecompass": 3, "prior:grn": 2, "random": 4, "none": 0}


def test_without_a_model_random_vectors_take_a_default_size_and_model_needs_vocab(model_and_vocab):
    variants, _ = gene_vector_variants(HUMAN[:3])
    assert list(variants) == ["random", "none"] and variants["random"].shape == (3, 64)
    with pytest.raises(ValueError, match="pass model and vocab together"):
        gene_vector_variants(HUMAN[:3], model=model_and_vocab[0])
