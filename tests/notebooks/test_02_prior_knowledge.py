"""Notebook 02 on the ci profile: four priors aligned to the corpus vocabulary, labelled, leak-free, with signal."""
import json

import numpy as np
import pandas as pd
import pytest

from gc_lib.core import paths
from gc_lib.corpus.vocab import SPECIAL_TOKENS, Vocabulary
from gc_lib.priors.store import PRIOR_NAMES, load_priors


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("02_prior_knowledge")


@pytest.fixture(scope="module")
def out_dir(metrics):
    return paths.DATA_DIR / "02_prior_knowledge"


@pytest.fixture(scope="module")
def vocab(metrics):
    return Vocabulary.load(paths.DATA_DIR / "01_corpus" / "corpus" / "vocab.json")


def test_every_prior_is_aligned_to_the_corpus_vocabulary(out_dir, vocab, metrics):
    priors = load_priors(out_dir / "priors", vocab)  # refuses a prior built for another vocabulary
    assert set(priors) == set(PRIOR_NAMES)
    for name, table in priors.items():
        assert table.vectors.shape == (len(vocab), table.dim) and table.mask.shape == (len(vocab),), name
        assert not table.mask[: len(SPECIAL_TOKENS)].any(), name
        assert not table.vectors[~table.mask].any(), name          # rows without the prior are zero
        assert np.isfinite(table.vectors).all(), name
        assert int(table.mask.sum()) == sum(s["covered"] for s in metrics["coverage"][name].values()), name


def test_coverage_per_species_and_substitute_labels(metrics):
    coverage = metrics["coverage"]
    for name in ("grn", "promoter", "family"):
        assert coverage[name]["human"]["fraction"] > 0.6, name
        assert coverage[name]["mouse"]["fraction"] > 0.5, name
    assert coverage["coexpression"]["human"]["covered"] > 50   # few pairs reach r >= 0.8 at the bundle's size
    assert metrics["substitute"] == {"grn": False, "promoter": True, "family": True, "coexpression": False}


def test_mouse_tokens_carry_their_human_orthologs_vector(out_dir, vocab):
    table = load_priors(out_dir / "priors", vocab, names=("grn",))["grn"]
    genes = vocab.genes
    mouse = genes[(genes["species"] == "mouse") & (genes["homology_type"] == "one2one")].head(300)
    partner = vocab.encode(mouse["human_ortholog"])
    present = partner >= 0
    rows = mouse.index.to_numpy()[present]
    np.testing.assert_array_equal(table.mask[rows], table.mask[partner[present]])
    np.testing.assert_array_equal(table.vectors[rows], table.vectors[partner[present]])


def test_held_out_edges_are_kept_out_of_the_grn_prior(out_dir, metrics):
    table = pd.read_parquet(out_dir / "heldout_edges.parquet")
    held = table[table["holdout"] == "edge"]
    manifest = json.loads((out_dir / "priors" / "grn.json").read_text())
    assert len(held) == metrics["grn"]["held_out_edges"] > 1_000
    assert manifest["exclusion"]["excluded_edges_given"] == len(held)
    assert manifest["exclusion"]["edges_removed"] >= len(held)
    assert manifest["edges_used"] == metrics["grn"]["edges"] - manifest["exclusion"]["edges_removed"]


def test_priors_carry_signal(metrics):
    signal = {(row["prior"], row["check"]): row for row in metrics["signal"]}
    for name in ("grn", "family", "promoter"):
        row = signal[(name, "GO process")]
        assert row["auc"] > 0.52 and row["p_value"] < 1e-3, (name, row)
    held = signal[("grn", "held-out edges")]
    assert held["auc"] > 0.58 and held["p_value"] < 1e-6, held
    assert signal[("family", "TF family")]["note"] == "built from these groups"


def test_manifests_name_sources_and_figures_exist(out_dir):
    for name in PRIOR_NAMES:
        manifest = json.loads((out_dir / "priors" / f"{name}.json").read_text())
        assert {"method", "coverage", "vocab_hash", "files", "build_key"} <= set(manifest), name
    assert json.loads((out_dir / "priors" / "grn.json").read_text())["resolution"]["source"]["sha256"]
    for figure in ("coverage", "signal", "umap"):
        assert paths.figure_path("02_prior_knowledge", figure).exists(), figure


def test_held_out_tfs_lose_every_edge_in_every_prior_built_from_edges(out_dir, vocab, metrics):
    table = pd.read_parquet(out_dir / "heldout_edges.parquet")
    tfs = sorted(set(table.loc[table["holdout"] == "tf", "tf"]))
    assert tfs == sorted(metrics["grn"]["held_out_tfs"]) and len(tfs) == 20
    assert len(table[table["holdout"] == "tf"]) == metrics["grn"]["held_out_tf_edges"] >= 20 * 20
    assert not set(table.loc[table["holdout"] == "edge", "tf"]) & set(tfs)     # the two hold-outs are disjoint
    manifest = json.loads((out_dir / "priors" / "grn.json").read_text())
    assert set(tfs) <= set(manifest["build_key"]["exclude_tfs"])
    grn = load_priors(out_dir / "priors", vocab, names=("grn",))["grn"]
    tokens = vocab.encode(tfs)
    assert (tokens >= 0).all() and not grn.mask[tokens].any()                # no edge left to place them
