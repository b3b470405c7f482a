"""gc_lib.embed: obsm/varm shapes, genes averaged by identity, order and batching do not matter, clear errors."""
import numpy as np
import pytest
import torch
from synthetic import HUMAN, MOUSE
from synthetic import count_cells as cells

import gc_lib
from gc_lib.corpus.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


def test_embed_writes_cells_and_genes(checkpoint):
    adata = cells(30, HUMAN[:35] + ["ENSG99999999999"], "human", 5)
    gc_lib.embed(adata, checkpoint, batch_size=7, progress=False)
    assert adata.obsm["X_genecompass"].shape == (30, 16) and np.isfinite(adata.obsm["X_genecompass"]).all()
    assert adata.varm["X_genecompass"].shape == (36, 16)
    assert np.isnan(adata.varm["X_genecompass"][-1]).all() and adata.var["X_genecompass_n_cells"].iloc[-1] == 0
    seen = adata.var["X_genecompass_n_cells"].to_numpy() > 0
    assert seen.sum() > 20 and np.isfinite(adata.varm["X_genecompass"][seen]).all()
    params = adata.uns["X_genecompass"]["params"]
    known = int((Tokenizer.load(checkpoint).vocab.encode(adata.var_names) >= 0).sum())
    assert params["gene_overlap"]["human"] == {"genes": 36, "in_vocabulary": known} and known >= 30


def test_batching_and_cell_order_do_not_change_embeddings(checkpoint):
    adata = cells(25, HUMAN, "human", 6)
    one = gc_lib.embed(adata, checkpoint, batch_size=25, progress=False, copy=True)
    shuffled = adata[np.random.default_rng(0).permutation(25)].copy()
    many = gc_lib.embed(shuffled, checkpoint, batch_size=4, progress=False, copy=True)
    np.testing.assert_allclose(many[one.obs_names].obsm["X_genecompass"], one.obsm["X_genecompass"], atol=1e-5)
    np.testing.assert_allclose(many.varm["X_genecompass"], one.varm["X_genecompass"], atol=1e-5, equal_nan=True)


def test_gene_embedding_is_the_mean_over_cells_where_the_gene_is_a_token(checkpoint):
    from gc_lib.model.architecture import load_model

    adata = cells(6, HUMAN, "human", 7)
    out = gc_lib.embed(adata, checkpoint, progress=False, copy=True)
    model, tokenizer = load_model(checkpoint).eval(), Tokenizer.load(checkpoint)
    table = tokenizer.tokenize(adata)
    target = tokenizer.vocab.encode([HUMAN[0]])[0]                 # expressed in every cell (counts + 1)
    states = []
    for ids, values in zip(table["input_ids"].to_pylist(), table["values"].to_pylist()):
        with torch.no_grad():
            hidden = model.encode(torch.tensor([ids]), torch.tensor([values]), torch.tensor([0]))[0, 1:]
        states.append(hidden[ids.index(target)].numpy())
    np.testing.assert_allclose(out.varm["X_genecompass"][0], np.mean(states, axis=0), atol=1e-5)


def test_mixed_species_and_bad_input(checkpoint):
    mouse = cells(10, MOUSE, "mouse", 8)
    gc_lib.embed(mouse, checkpoint, progress=False)
    assert mouse.obsm["X_genecompass"].shape == (10, 16)
    strangers = cells(5, [f"ENSG{i:011d}" for i in range(500, 510)], "human", 9)
    with pytest.raises(ValueError, match="none of the 10 genes"):
        gc_lib.embed(strangers, checkpoint, progress=False)


def test_a_checkpoint_whose_model_and_vocabulary_disagree_is_refused(checkpoint, tmp_path):
    """The model's token rows must be the vocabulary's tokens; a mismatch is named, not embedded."""
    import shutil
    from dataclasses import replace

    from gc_lib.model.architecture import ModelConfig, build_model, save_model

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    config = ModelConfig.from_checkpoint(checkpoint)
    save_model(build_model(replace(config, vocab_size=config.vocab_size - 1, prior_dims={})), broken)
    with pytest.raises(ValueError, match="vocab.json has .* tokens but the model"):
        gc_lib.embed(cells(4, HUMAN, "human", 10), broken, progress=False)


def test_mean_pooling_averages_the_cell_token_and_the_real_gene_tokens(checkpoint):
    from gc_lib.model.architecture import load_model

    adata = cells(9, HUMAN, "human", 11)
    out = gc_lib.embed(adata, checkpoint, pooling="mean", gene_embeddings=False, batch_size=4, progress=False,
                       copy=True)
    assert out.uns["X_genecompass"]["params"]["pooling"] == "mean"
    model, tokenizer = load_model(checkpoint).eval(), Tokenizer.load(checkpoint)
    table = tokenizer.tokenize(adata)
    for row, (ids, values) in enumerate(zip(table["input_ids"].to_pylist(), table["values"].to_pylist())):
        with torch.no_grad():
            hidden = model.encode(torch.tensor([ids]), torch.tensor([values]), torch.tensor([0]))[0]
        np.testing.assert_allclose(out.obsm["X_genecompass"][row], hidden.mean(0).numpy(), atol=1e-5)
    cell = gc_lib.embed(adata, checkpoint, gene_embeddings=False, progress=False, copy=True)
    assert not np.allclose(cell.obsm["X_genecompass"], out.obsm["X_genecompass"], atol=1e-3)
    with pytest.raises(ValueError, match="pooling must be one of"):
        gc_lib.embed(adata, checkpoint, pooling="max", progress=False)


def test_principal_axis_finds_what_a_one_dimensional_embedding_follows():
    from gc_lib.tasks.embedding import depth, principal_axis

    adata = cells(40, HUMAN, "human", 12)
    covariates = depth(adata)
    counts = adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X
    np.testing.assert_array_equal(covariates["genes per cell"], (counts > 0).sum(1))
    np.testing.assert_allclose(covariates["total counts"], counts.sum(1))
    rng = np.random.default_rng(0)
    direction = rng.normal(size=8)
    curve = np.log(covariates["total counts"])[:, None] * direction + 0.01 * rng.normal(size=(40, 8))
    found = principal_axis(curve, covariates)
    assert found["pc1_variance"] > 0.95 and found["|rho| PC1 ~ total counts"] > 0.99
    noise = principal_axis(rng.normal(size=(40, 8)), covariates)
    assert noise["pc1_variance"] < 0.5 and noise["|rho| PC1 ~ total counts"] < 0.5
