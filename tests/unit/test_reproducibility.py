"""A pretraining run is reproducible for a given seed on one machine: two fresh processes (different Python hash
seeds, the same thread count) write identical loss logs, with and without data-loader workers."""
import os
import subprocess
import sys

import pandas as pd
import pytest
from synthetic import HUMAN, MOUSE, count_cells

from gc_lib.corpus.builder import CorpusConfig, GeneAnnotation, build_corpus

RUN = """
import sys
from gc_lib.model.architecture import ModelConfig
from gc_lib.model.pretrain import pretrain
from gc_lib.model.trainer import TrainConfig
from gc_lib.corpus.tokenizer import Tokenizer
corpus, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
vocab_size = len(Tokenizer.load(corpus).vocab)
model = ModelConfig.preset("tiny", vocab_size, d_model=32, n_heads=2, d_ff=64, max_len=33)
config = TrainConfig(max_steps=12, batch_size=8, max_genes=32, eval_every=4, eval_batches=2, eval_fraction=0.1,
                     log_every=1, save_every=12, num_workers=workers, seed=3)
pretrain(corpus, out, model, config, progress=False)
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    count_cells(90, HUMAN, "human", 0).write_h5ad(root / "h.h5ad")
    count_cells(70, MOUSE, "mouse", 1).write_h5ad(root / "m.h5ad")
    annotation = GeneAnnotation(pd.Series("protein_coding", index=HUMAN + MOUSE), pd.DataFrame(
        {"mouse_id": MOUSE[:20], "human_id": HUMAN[:20], "homology_type": "one2one"}))
    build_corpus([root / "h.h5ad", root / "m.h5ad"], root / "corpus", config=CorpusConfig(n_top=32, chunk_size=50),
                 annotation=annotation, n_workers=1, progress=False)
    return root / "corpus"


def train_in_fresh_process(corpus, out, *, hash_seed: int, workers: int = 0) -> pd.DataFrame:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "OMP_NUM_THREADS": "2"}
    subprocess.run([sys.executable, "-c", RUN, str(corpus), str(out), str(workers)], check=True, env=env)
    return pd.read_csv(out / "log.csv").drop(columns=["time_s", "tokens_per_s"], errors="ignore")


@pytest.mark.parametrize("workers", [0, 2])
def test_two_fresh_runs_give_identical_losses(corpus, tmp_path, workers):
    first = train_in_fresh_process(corpus, tmp_path / "a", hash_seed=1, workers=workers)
    second = train_in_fresh_process(corpus, tmp_path / "b", hash_seed=2, workers=workers)
    losses = ["step", "split", "loss", "id_loss", "value_loss"]
    assert len(first) > 10 and set(first["split"]) == {"train", "eval"}
    pd.testing.assert_frame_equal(first[losses], second[losses], check_exact=True)
