"""gc_lib.embed: obsm/varm shapes, genes averaged by identity, order and batching do not matter, clear errors."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import gc_lib
from gc_lib.corpus import CorpusConfig, GeneAnnotation, build_corpus
from gc_lib.model import ModelConfig
from gc_lib.pretrain import pretrain
from gc_lib.tokenizer import Tokenizer
from gc_lib.train import TrainConfig

HUMAN = [f"ENSG{i:011d}" for i in range(1, 41)]
MOUSE = [f"ENSMUSG{i:011d}" for i in range(1, 31)]


def cells(n, genes, species, seed):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.8, 2.0, len(genes)), size=(n, len(genes))).astype(np.float32)
    counts[:, 0] += 1
    obs = pd.DataFrame({"species": species}, index=[f"{species}{i}" for i in range(n)])
    var = pd.DataFrame({"gene_symbol": [f"s{i}" for i in range(len(genes))]}, index=genes)
    return ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    cells(120, HUMAN, "human", 0).write_h5ad(root / "h.h5ad")
    cells(100, MOUSE, "mouse", 1).write_h5ad(root / "m.h5ad")
    annotation = GeneAnnotation(pd.Series("protein_coding", index=HUMAN + MOUSE), pd.DataFrame(
        {"mouse_id": MOUSE[:20], "human_id": HUMAN[:20], "homology_type": "one2one"}))
    build_corpus([root / "h.h5ad", root / "m.h5ad"], root / "corpus", config=CorpusConfig(n_top=24, chunk_size=60),
                 annotation=annotation, n_workers=1, progress=False)
    vocab_size = len(Tokenizer.load(root / "corpus").vocab)
    model = ModelConfig.preset("tiny", vocab_size, d_model=16, n_heads=2, d_ff=32, max_len=32)
    pretrain(root / "corpus", root / "run", model, TrainConfig(max_steps=2, batch_size=8, max_genes=24,
                                                                eval_batches=1, eval_fraction=0.1), progress=False)
    return root / "run" / "checkpoint"


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
    from gc_lib.model import load_model

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
