"""Notebook 03 on the ci profile: a pretraining run with loss curves, ablations, a loadable checkpoint, embeddings,
and what the cell embedding encodes (cell token vs mean pooling, depth)."""
import numpy as np
import pandas as pd
import pytest

import gc_lib
from gc_lib.core import paths
from gc_lib.corpus.tokenizer import Tokenizer
from gc_lib.model.architecture import load_model


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("03_pretraining")


def test_training_ran_and_the_loss_fell(metrics):
    assert metrics["steps"] > 0 and metrics["tokens_seen"] > 0
    assert metrics["final"]["train"]["loss"] < metrics["first"]["train"]["loss"]
    assert metrics["final"]["eval"]["id_loss"] < np.log(metrics["model"]["vocab_size"])  # better than uniform


def test_ablations_ran_on_the_same_held_out_cells(metrics):
    ablation = metrics["ablation"]
    assert set(ablation) == {"full", "no priors", "no values"}
    tokens = {row["masked_tokens"] for row in ablation.values()}
    assert len(tokens) == 1  # same cells, same masks
    assert ablation["no priors"]["parameters"] < ablation["full"]["parameters"]
    for row in ablation.values():
        assert np.isfinite([row["loss"], row["id_loss"], row["value_loss"]]).all()


def test_checkpoint_loads_and_embeds_new_cells(metrics):
    checkpoint = paths.DATA_DIR / metrics["checkpoint"]
    model = load_model(checkpoint)
    assert model.num_parameters() == metrics["parameters"]
    assert set(model.config.prior_dims) == {"grn", "promoter", "family", "coexpression"}
    vocab = Tokenizer.load(checkpoint).vocab
    log = pd.read_csv(checkpoint.parent / "log.csv")
    assert set(log["split"]) == {"train", "eval"}
    import anndata as ad
    adata = ad.read_h5ad(paths.DATA_DIR / "00_data" / "datasets" / "pbmc68k_reduced.h5ad")[:20].copy()
    gc_lib.embed(adata, checkpoint, progress=False)
    assert adata.obsm["X_genecompass"].shape == (20, model.config.d_model)
    assert len(vocab) == model.config.vocab_size


def test_figures_exist(metrics):
    for name in ("loss_curves", "umap"):
        assert paths.figure_path("03_pretraining", name).exists()
    assert metrics["embedded_cells"] > 1_000


def test_cell_embedding_is_measured_against_depth_and_mean_pooling(metrics):
    found = metrics["cell_embedding"]
    datasets = {p.stem for p in (paths.DATA_DIR / "00_data" / "datasets").glob("*.h5ad")}
    assert set(found["structure"]) == datasets and "pbmc68k_reduced" in datasets   # one row per embedded dataset
    for row in found["structure"].values():
        assert 0 < row["pc1_variance"] <= 1
        assert 0 <= row["|rho| PC1 ~ genes per cell"] <= 1 and 0 <= row["|rho| PC1 ~ total counts"] <= 1
    pooling = found["pooling"]
    assert set(pooling) == {"cell token", "mean pooling", "depth only"}
    for row in pooling.values():
        assert 0 <= row["kNN accuracy mean"] <= 1 and 0 <= row["LR accuracy mean"] <= 1
    assert pooling["depth only"]["pc1_variance"] is None and 0 < pooling["cell token"]["pc1_variance"] <= 1
    assert 0 < found["majority_class_accuracy"] < 1 and found["test_fraction"] == 0.3


def test_rank_only_variant_is_the_main_run_without_values_and_priors(metrics):
    rank_only = metrics["rank_only"]
    checkpoint = paths.DATA_DIR / rank_only["checkpoint"]
    model = load_model(checkpoint)
    assert model.config.use_values is False and model.config.prior_dims == {}
    assert rank_only["step"] == metrics["steps"]                                   # the main run's length
    assert rank_only["eval_last"]["masked_tokens"] == metrics["ablation"]["full"]["masked_tokens"]  # same masks
    assert rank_only["parameters"] < metrics["parameters"]
    assert Tokenizer.load(checkpoint).vocab.hash == Tokenizer.load(paths.DATA_DIR / metrics["checkpoint"]).vocab.hash
