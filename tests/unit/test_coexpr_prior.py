"""Co-expression prior: correlations match numpy, planted pairs are found per dataset, mouse pairs go to human."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gc_lib.corpus.builder import CorpusConfig, GeneAnnotation, build_corpus
from gc_lib.corpus.tokenizer import Tokenizer
from gc_lib.priors.coexpression import (
    REPORTED_THRESHOLDS,
    CoexpressionConfig,
    build_coexpression_prior,
    coexpression_pairs,
    correlated_pairs,
    to_human_pairs,
)
from gc_lib.priors.gene2vec import Gene2VecConfig

HUMAN = [f"ENSG{i:011d}" for i in range(1, 31)]
MOUSE = [f"ENSMUSG{i:011d}" for i in range(1, 21)]


def test_correlated_pairs_match_numpy_corrcoef():
    rng = np.random.default_rng(0)
    dense = rng.poisson(1.0, size=(80, 40)).astype(np.float32)
    dense[:, 5] = dense[:, 2] * 2 + rng.poisson(0.1, 80)
    r = np.corrcoef(dense, rowvar=False)
    pairs, counts = correlated_pairs(sp.csr_matrix(dense), threshold=0.3, block=7)
    expected = {(i, j) for i in range(40) for j in range(i + 1, 40) if r[i, j] >= 0.3}
    assert set(zip(pairs["i"], pairs["j"])) == expected and (2, 5) in expected
    np.testing.assert_allclose(pairs["r"], [r[i, j] for i, j in zip(pairs["i"], pairs["j"])], rtol=1e-5)
    assert counts == {t: int(sum(r[i, j] >= t for i in range(40) for j in range(i + 1, 40)))
                      for t in REPORTED_THRESHOLDS}


def planted(n_cells, n_genes, seed, pairs):
    """Counts with each (i, j) of ``pairs`` driven by one shared factor, every other gene independent."""
    rng = np.random.default_rng(seed)
    dense = rng.poisson(3.0, size=(n_cells, n_genes)).astype(np.float32)
    for i, j in pairs:
        factor = rng.gamma(2.0, 10.0, n_cells)
        dense[:, i], dense[:, j] = rng.poisson(factor), rng.poisson(factor)
    return dense


def write(path, dense, genes, species):
    obs = pd.DataFrame({"species": species}, index=[f"c{i}" for i in range(len(dense))])
    var = pd.DataFrame({"gene_symbol": [f"s{i}" for i in range(len(genes))]}, index=genes)
    ad.AnnData(sp.csr_matrix(dense), obs=obs, var=var).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("coexpr")
    inputs = [write(root / "human_a.h5ad", planted(300, 30, 0, [(0, 1), (2, 3)]), HUMAN, "human"),
              write(root / "mouse_b.h5ad", planted(250, 20, 1, [(4, 5), (6, 7)]), MOUSE, "mouse"),
              write(root / "tiny_c.h5ad", planted(40, 30, 2, [(8, 9)]), HUMAN, "human")]
    annotation = GeneAnnotation(
        biotype=pd.Series("protein_coding", index=HUMAN + MOUSE),
        orthologs=pd.DataFrame({"mouse_id": MOUSE[:10], "human_id": HUMAN[10:20],
                                "homology_type": ["one2one"] * 5 + ["one2many"] + ["one2one"] * 4}))
    build_corpus(inputs, root / "corpus", config=CorpusConfig(n_top=64, chunk_size=100), annotation=annotation,
                 n_workers=1, progress=False)
    return root / "corpus"


def test_planted_pairs_are_found_in_their_dataset_and_small_datasets_skipped(corpus):
    vocab = Tokenizer.load(corpus).vocab
    pairs, report = coexpression_pairs(corpus, vocab, CoexpressionConfig(threshold=0.6, min_cells=100))
    found = {(d, *sorted(vocab.decode([a, b], symbols=False))) for d, a, b in pairs[["dataset", "a", "b"]].to_numpy()}
    assert ("human_a", HUMAN[0], HUMAN[1]) in found and ("human_a", HUMAN[2], HUMAN[3]) in found
    assert ("mouse_b", MOUSE[4], MOUSE[5]) in found and ("mouse_b", MOUSE[6], MOUSE[7]) in found
    assert len(found) == 4  # independent genes do not pass
    report = report.set_index("dataset")
    assert report.loc["tiny_c", "skipped"].startswith("fewer than 100 cells")
    assert report.loc["human_a", "pairs_r>=0.6"] == 2 and report.loc["human_a", "genes_correlated"] == 30


def test_mouse_pairs_map_to_one2one_human_orthologs(corpus):
    vocab = Tokenizer.load(corpus).vocab
    pairs, _ = coexpression_pairs(corpus, vocab, CoexpressionConfig(threshold=0.6))
    human = {tuple(sorted(p)) for p in to_human_pairs(pairs, vocab).to_numpy().tolist()}
    assert (HUMAN[16], HUMAN[17]) in human          # mouse 6-7 → human 16-17, both one2one
    assert not any(HUMAN[15] in p for p in human)   # mouse 5 is one2many: its pair is dropped by default
    assert any(HUMAN[15] in p for p in map(tuple, to_human_pairs(pairs, vocab, orthology="any").to_numpy()))


def test_build_aligns_to_vocab_and_refuses_an_empty_result(corpus):
    vocab = Tokenizer.load(corpus).vocab
    config = CoexpressionConfig(threshold=0.6)
    table, human, report = build_coexpression_prior(corpus, vocab, config=config,
                                                    gene2vec=Gene2VecConfig(dim=4, walks_per_gene=2))
    assert set(human.index) == {HUMAN[0], HUMAN[1], HUMAN[2], HUMAN[3], HUMAN[16], HUMAN[17]}
    assert table.info["coverage"]["mouse"]["covered"] == 2  # mouse 6 and 7 via their human partners
    with pytest.raises(ValueError, match="no gene pair reaches Pearson r >= 0.99"):
        build_coexpression_prior(corpus, vocab, config=CoexpressionConfig(threshold=0.99))
