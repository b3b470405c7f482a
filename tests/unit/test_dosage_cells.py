"""Notebook 09's corpus streaming and evaluation (gc_lib.tasks.dosage_cells, the CV helpers of gc_lib.tasks.dosage):
streamed token statistics equal the in-memory ones, sampled cells hold their gene within the window, the per-gene
cap and the seed hold, a brute-force loop over cells gives the same sample, and the fold scoring and AUC table
match hand computations."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from synthetic import HUMAN, MOUSE

from gc_lib.corpus.builder import read_corpus
from gc_lib.corpus.tokenizer import Tokenizer
from gc_lib.tasks import dosage, dosage_cells, finetune
from gc_lib.tasks.cell_tokens import CellTokens

WINDOW = 6  # of the fixture's 24 ranks: a gene is "seen" in only some of the cells holding it


@pytest.fixture(scope="module")
def corpus_dir(tiny_checkpoint):
    return tiny_checkpoint.parent.parent / "corpus"


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return read_corpus(corpus_dir)


@pytest.fixture(scope="module")
def genes(corpus_dir):
    """Ten labelled genes: eight with a human and a mouse token, one human-only, one with no token."""
    vocab = Tokenizer.load(corpus_dir).vocab
    ids = HUMAN[:8] + [HUMAN[30], "ENSG99999999999"]
    return pd.DataFrame({
        "ensembl_id": ids,
        "label": ["sensitive", "insensitive"] * 5,
        "human_token": vocab.encode(ids).astype(np.int64),
        "mouse_token": np.r_[vocab.encode(MOUSE[:8]), -1, -1].astype(np.int64),
    })


def holders(corpus: pd.DataFrame, genes: pd.DataFrame, window: int) -> list[set[int]]:
    """Brute force: per gene, the corpus positions of the cells with one of its tokens in the first ranks."""
    out = []
    for _, gene in genes.iterrows():
        tokens = {t for t in (gene["human_token"], gene["mouse_token"]) if t >= 0}
        out.append({i for i, ids in enumerate(corpus["input_ids"]) if tokens & set(ids[:window].tolist())})
    return out


def brute_force_choice(corpus: pd.DataFrame, genes: pd.DataFrame, window: int, cap: int, seed: int) -> pd.DataFrame:
    """The documented sampling as a plain loop: one random key per (cell, labelled token) in corpus order, then
    the ``cap`` smallest keys of each gene."""
    gene_of = {t: g for g, row in genes.iterrows() for t in (row["human_token"], row["mouse_token"]) if t >= 0}
    rng = np.random.default_rng(seed)
    keyed = []
    for position, ids in enumerate(corpus["input_ids"]):
        for token in ids[:window]:
            if int(token) in gene_of:
                keyed.append((gene_of[int(token)], rng.random(), position))
    rows = []
    for gene in sorted({g for g, _, _ in keyed}):
        rows += [(gene, p) for _, _, p in sorted(k for k in keyed if k[0] == gene)[:cap]]
    return pd.DataFrame(rows, columns=["gene", "position"]).sort_values(["gene", "position"], ignore_index=True)


def test_streamed_statistics_equal_in_memory_ones(corpus_dir, corpus):
    n_tokens = len(Tokenizer.load(corpus_dir).vocab)
    streamed = dosage_cells.corpus_token_statistics(corpus_dir, n_tokens, window=WINDOW, batch_size=7)
    pd.testing.assert_frame_equal(streamed, dosage.token_statistics(corpus, n_tokens, window=WINDOW))
    assert streamed["n_cells_human"].sum() == WINDOW * (corpus["species"] == 0).sum()  # every cell has ≥ 6 ranks


def test_chosen_cells_hold_their_gene_and_respect_the_cap(corpus, corpus_dir, genes):
    chosen = dosage_cells.choose_cells(corpus_dir, genes, window=WINDOW, cells_per_gene=5, seed=1, batch_size=16)
    truth = holders(corpus, genes, WINDOW)
    assert len(truth[0]) > 5 and 0 < len(truth[8]) and not truth[9]  # the fixture exercises the cap and both ends
    for gene, positions in chosen.groupby("gene")["position"]:
        assert set(positions) <= truth[gene]                         # held within the window, not just anywhere
        assert len(positions) == positions.nunique() == min(5, len(truth[gene]))
    assert set(chosen["gene"]) == {g for g, cells in enumerate(truth) if cells}
    both = set(chosen.loc[chosen["gene"] == 0, "position"])
    assert {corpus["species"].iloc[p] for p in both} == {0, 1}         # human and mouse tokens both count


def test_choice_is_seeded_and_independent_of_batching(corpus_dir, genes):
    def choose(seed, batch_size):
        return dosage_cells.choose_cells(corpus_dir, genes, window=WINDOW, cells_per_gene=3, seed=seed,
                                         batch_size=batch_size)

    pd.testing.assert_frame_equal(choose(0, 16), choose(0, 16))
    pd.testing.assert_frame_equal(choose(0, 16), choose(0, 1000))
    assert not choose(0, 16).equals(choose(1, 16))


def test_choice_equals_the_brute_force_loop(corpus, corpus_dir, genes):
    for cap, seed in ((3, 0), (1, 7)):
        chosen = dosage_cells.choose_cells(corpus_dir, genes, window=WINDOW, cells_per_gene=cap, seed=seed,
                                           batch_size=25)
        pd.testing.assert_frame_equal(chosen, brute_force_choice(corpus, genes, WINDOW, cap, seed))
    everything = dosage_cells.choose_cells(corpus_dir, genes, window=WINDOW, cells_per_gene=10_000)
    assert set(everything["position"]) == set().union(*holders(corpus, genes, WINDOW))


def test_sample_cells_reads_only_the_chosen_rows(corpus, corpus_dir, genes):
    sampled = dosage_cells.sample_cells(corpus_dir, genes, window=WINDOW, cells_per_gene=2, seed=3, batch_size=16)
    chosen = dosage_cells.choose_cells(corpus_dir, genes, window=WINDOW, cells_per_gene=2, seed=3)
    assert sampled.index.tolist() == sorted(set(chosen["position"]))
    assert list(sampled.columns) == list(dosage_cells.CORPUS_COLUMNS)
    expected = corpus.loc[sampled.index]
    assert sampled["row"].tolist() == expected["row"].tolist()
    assert sampled["dataset"].tolist() == expected["dataset"].tolist()
    for got, want in zip(sampled["input_ids"], expected["input_ids"]):
        np.testing.assert_array_equal(got, want)


def test_token_labels_and_expression_features():
    genes = pd.DataFrame({"ensembl_id": ["G1", "G2", "G3"], "label": ["sensitive", "insensitive", "sensitive"],
                          "human_token": [4, -1, 6], "mouse_token": [5, 7, -1]})
    labels, groups = dosage.token_labels(genes)
    assert labels.to_dict() == {4: "sensitive", 6: "sensitive", 5: "sensitive", 7: "insensitive"}
    assert groups.to_dict() == {4: "G1", 6: "G3", 5: "G1", 7: "G2"}
    stats = pd.DataFrame({"detection_human": np.arange(8) / 10, "n_cells_human": 1,
                          "detection_mouse": np.arange(8) / 100, "mean_value_mouse": np.arange(8.0)})
    features = dosage.expression_features(genes, stats)
    assert list(features.columns) == ["detection_human", "detection_mouse", "mean_value_mouse"]
    np.testing.assert_allclose(features.to_numpy(), [[0.4, 0.05, 5], [0, 0.07, 7], [0.6, 0, 0]])


def test_out_of_fold_logistic_trains_without_the_test_fold():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 20)
    folds = np.repeat(np.arange(4), 10)
    signal = y + rng.normal(0, 0.3, len(y))
    scores = dosage.out_of_fold_logistic(signal, y, folds, C=1.0)
    assert np.isfinite(scores).all() and roc_auc_score(y, scores) > 0.95
    # each fold's scores are those of a model fit on the other folds only
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    held_out = folds == 2
    manual = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=5_000))
    manual.fit(signal[~held_out, None], y[~held_out])
    np.testing.assert_allclose(scores[held_out], manual.predict_proba(signal[held_out, None])[:, 1])


def test_auc_table_by_hand():
    y = np.array([0, 1, 0, 1, 0, 1, 1, 1])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = pd.DataFrame({"perfect": [0.1, 0.9, 0.2, 0.8, 0.1, 0.7, 0.8, 0.9],
                           "partly": [0.5, 0.4, 0.1, 0.9, 0.3, 0.2, 0.6, np.nan]})
    table = dosage.auc_table(scores, y, folds)
    assert table.index.tolist() == ["perfect", "partly"]
    assert table.loc["perfect", "auc_per_fold"] == [1.0, 1.0] and table.loc["perfect", "auc_pooled"] == 1.0
    partly = table.loc["partly"]
    # fold 0: positives 0.4, 0.9 against negatives 0.5, 0.1 → 3 of 4 pairs; fold 1 (NaN left out): 1 of 2
    assert partly["auc_per_fold"] == [0.75, 0.5] and partly["genes_scored"] == 7 and partly["folds"] == 2
    assert partly["auc_mean"] == 0.625 and partly["auc_sd"] == pytest.approx(0.25 / np.sqrt(2))
    assert partly["auc_pooled"] == pytest.approx(roc_auc_score(y[:7], scores["partly"][:7]))
    one_class = dosage.auc_table(scores, y, np.array([0, 0, 0, 0, 1, 1, 2, 2]))  # fold 2 holds one class only
    assert one_class.loc["perfect", "folds"] == 2


def test_out_of_fold_fine_tuned_scores_every_gene_it_saw(tiny_checkpoint, corpus_dir, genes, tmp_path):
    kept = genes.iloc[:8]
    sampled = dosage_cells.sample_cells(corpus_dir, kept, window=WINDOW, cells_per_gene=6, seed=0)
    cells = CellTokens.from_frame(sampled, 24)
    folds = np.repeat([0, 1], 4)  # each fold trains on two sensitive and two insensitive genes
    config = finetune.FinetuneConfig(epochs=1, batch_size=8, patience=1, validation_fraction=0.25, seed=5)
    scores = dosage_cells.out_of_fold_fine_tuned(cells, kept, folds, tiny_checkpoint, tmp_path, config)
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrained_fold0", "pretrained_fold1"]
    again = dosage_cells.out_of_fold_fine_tuned(cells, kept, folds, tiny_checkpoint, tmp_path, config)
    np.testing.assert_allclose(again, scores)  # reused models predict the same
