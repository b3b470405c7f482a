"""Shared fixtures of the unit tests."""
import pandas as pd
import pytest
from synthetic import HUMAN, MOUSE, count_cells


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A 2-step pretraining run on a human + mouse corpus (40 + 30 genes, the first 20 one-to-one orthologs)."""
    from gc_lib.corpus.builder import CorpusConfig, GeneAnnotation, build_corpus
    from gc_lib.corpus.tokenizer import Tokenizer
    from gc_lib.model.architecture import ModelConfig
    from gc_lib.model.pretrain import pretrain
    from gc_lib.model.trainer import TrainConfig

    root = tmp_path_factory.mktemp("tiny_checkpoint")
    count_cells(120, HUMAN, "human", 0).write_h5ad(root / "h.h5ad")
    count_cells(100, MOUSE, "mouse", 1).write_h5ad(root / "m.h5ad")
    annotation = GeneAnnotation(pd.Series("protein_coding", index=HUMAN + MOUSE), pd.DataFrame(
        {"mouse_id": MOUSE[:20], "human_id": HUMAN[:20], "homology_type": "one2one"}))
    build_corpus([root / "h.h5ad", root / "m.h5ad"], root / "corpus", config=CorpusConfig(n_top=24, chunk_size=60),
                 annotation=annotation, n_workers=1, progress=False)
    vocab_size = len(Tokenizer.load(root / "corpus").vocab)
    model = ModelConfig.preset("tiny", vocab_size, d_model=16, n_heads=2, d_ff=32, max_len=32)
    pretrain(root / "corpus", root / "run", model, TrainConfig(max_steps=2, batch_size=8, max_genes=24,
                                                                eval_batches=1, eval_fraction=0.1), progress=False)
    return root / "run" / "checkpoint"
