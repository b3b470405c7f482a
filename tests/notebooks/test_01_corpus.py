"""Notebook 01 on the ci profile: the corpus of the whole bundle, both species, readable shards, TF tokens."""
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gc_lib.core import paths
from gc_lib.corpus.builder import shard_paths
from gc_lib.corpus.tokenizer import SHARD_SCHEMA, Tokenizer


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("01_corpus")


@pytest.fixture(scope="module")
def corpus_dir(metrics):
    return paths.DATA_DIR / "01_corpus" / "corpus"


def test_both_species_in_vocabulary_and_corpus(metrics):
    per_species = metrics["vocabulary"]["genes_per_species"]
    assert per_species["human"] > 10_000 and per_species["mouse"] > 10_000
    species = {row["species"] for row in metrics["qc"].values()}
    assert species == {"human", "mouse"}
    assert {"baron_human", "baron_mouse"} <= set(metrics["qc"])  # the labelled pair is in the corpus


def test_qc_keeps_most_cells_and_counts_add_up(metrics):
    kept = sum(row["cells_kept"] for row in metrics["qc"].values())
    assert kept == metrics["cells"] == metrics["shard_rows"]
    for name, row in metrics["qc"].items():
        assert 0.8 * row["cells_in"] <= row["cells_kept"] < row["cells_in"], name


def test_shards_follow_the_schema_and_manifest(corpus_dir):
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    tokenizer = Tokenizer.load(corpus_dir)
    assert manifest["vocabulary"]["hash"] == tokenizer.vocab.hash
    for path in shard_paths(corpus_dir):
        table = pq.read_table(path)
        assert table.schema.equals(SHARD_SCHEMA), path
        lengths = table["length"].to_numpy()
        assert (lengths <= manifest["parameters"]["n_top"]).all() and (lengths > 0).all()
        ids = table["input_ids"].combine_chunks().flatten().to_numpy()
        assert ids.min() >= 4 and ids.max() < len(tokenizer.vocab)  # gene tokens only, all in the vocabulary


def test_tfs_are_tokens_even_where_no_cell_expresses_them(metrics, corpus_dir):
    added = metrics["extra_tokens_added"]
    assert added["human"] > 0 and added["mouse"] > 0  # TFs no kept cell of the bundle expresses, e.g. NR5A1
    stats = pd.read_parquet(corpus_dir / "medians.parquet")
    extra = stats[stats["extra"]]
    assert extra["species"].value_counts().to_dict() == added and (extra["n_nonzero"] == 0).all()
    assert (stats.loc[~stats["extra"], "n_nonzero"] > 0).all()
    for symbol, row in metrics["screen_tf_tokens"].items():
        assert row == {"human token": True, "mouse token": True}, symbol


def test_inference_path_reproduces_the_corpus(metrics):
    assert set(metrics["retokenize_agreement"].values()) == {1.0}


def test_figures_written(metrics):
    for fig in ("qc", "gene_coverage", "lengths_values"):
        for suffix in ("png", "pdf"):
            path = paths.figure_path("01_corpus", fig, suffix)
            assert path.exists() and path.stat().st_size > 10_000, path
