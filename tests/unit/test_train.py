"""Training: schedule, exact resume of a pretraining run, and two torchrun processes matching one process."""
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from distributed import one_and_two_processes, torchrun

from gc_lib.corpus.builder import CorpusConfig, GeneAnnotation, build_corpus
from gc_lib.corpus.tokenizer import Tokenizer
from gc_lib.model.architecture import ModelConfig, load_model
from gc_lib.model.pretrain import pretrain
from gc_lib.model.trainer import TrainConfig, learning_rate

HERE = Path(__file__).parent
GENES = [f"ENSG{i:011d}" for i in range(1, 61)]


def test_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    lrs = [learning_rate(s, config) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(0.1)


def build_test_corpus(root: Path, change_one_count: bool = False) -> Path:
    """240 human cells × 60 genes tokenised into ``root/corpus`` (optionally with one count changed)."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.8, 2.0, len(GENES)), size=(240, len(GENES))).astype(np.float32)
    counts[:, 0] += 1
    counts[5, 3] += 7 * change_one_count
    root.mkdir(parents=True, exist_ok=True)
    obs = pd.DataFrame({"species": "human"}, index=[f"c{i}" for i in range(len(counts))])
    var = pd.DataFrame({"gene_symbol": [f"g{i}" for i in range(len(GENES))]}, index=GENES)
    ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var).write_h5ad(root / "cells.h5ad")
    build_corpus([root / "cells.h5ad"], root / "corpus", config=CorpusConfig(n_top=32, chunk_size=60),
                 annotation=GeneAnnotation(pd.Series("protein_coding", index=GENES), pd.DataFrame(
                     columns=["mouse_id", "human_id", "homology_type"])), n_workers=1, progress=False)
    return root / "corpus"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_test_corpus(tmp_path_factory.mktemp("train"))


def run(corpus, out, gepc: float = 0.0, **kw):
    vocab_size = len(Tokenizer.load(corpus).vocab)
    model = ModelConfig.preset("tiny", vocab_size, d_model=32, n_heads=2, d_ff=64, max_len=64, dropout=0.1,
                               gepc_loss_weight=gepc)
    config = TrainConfig(max_steps=8, batch_size=16, grad_accum=2, max_genes=32, learning_rate=3e-3, warmup_steps=2,
                         eval_every=4, eval_batches=2, log_every=1, save_every=4, eval_fraction=0.1,
                         num_workers=kw.pop("num_workers", 0))
    return pretrain(corpus, out, model, config, progress=False, **kw)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_run_continues_exactly_like_an_uninterrupted_one(corpus, tmp_path, num_workers):
    run(corpus, tmp_path / "straight", num_workers=num_workers)
    run(corpus, tmp_path / "resumed", num_workers=num_workers, stop_after=3)   # interrupted after step 3
    partial = pd.read_csv(tmp_path / "resumed" / "log.csv")
    assert partial["step"].max() == 3
    run(corpus, tmp_path / "resumed", num_workers=num_workers)                 # resumes from step 3
    straight = pd.read_csv(tmp_path / "straight" / "log.csv")
    resumed = pd.read_csv(tmp_path / "resumed" / "log.csv")
    pd.testing.assert_frame_equal(straight.drop(columns="elapsed_s"), resumed.drop(columns="elapsed_s"))
    a, b = load_model(tmp_path / "straight" / "checkpoint"), load_model(tmp_path / "resumed" / "checkpoint")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert np.array_equal(x.numpy(), y.numpy()), name


def test_run_writes_a_usable_checkpoint_and_learns(corpus, tmp_path):
    metrics = run(corpus, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint"
    files = {p.name for p in checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "optimizer.safetensors", "rng.safetensors",
            "trainer_state.json", "metrics.json", "medians.parquet", "tokenizer.json"} <= files
    assert Tokenizer.load(checkpoint).vocab.hash == Tokenizer.load(corpus).vocab.hash
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    train = log[log["split"] == "train"]
    assert train["value_loss"].iloc[-2:].mean() < train["value_loss"].iloc[:2].mean()
    assert set(log["split"]) == {"train", "eval"} and metrics["step"] == 8
    assert len(list((tmp_path / "run" / "checkpoints").glob("step-*"))) == 2
    assert (tmp_path / "run" / "tensorboard").is_dir()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    one, two = one_and_two_processes(HERE / "ddp_worker.py", tmp_path)
    assert one["world_size"] == 1 and two["world_size"] == 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    assert two["checksum"] == pytest.approx(one["checksum"], rel=1e-6)
    assert one["losses"][-1] < one["losses"][0]


def test_pretrain_cli_under_torchrun_trains_on_two_ranks(corpus, tmp_path):
    """DDP with the GEPC head on (DDP refuses parameters that get no gradient, so the head must be used)."""
    torchrun(["-m", "gc_lib.model.pretrain", "--corpus", str(corpus), "--out", str(tmp_path / "ddp"),
              "--max-steps", "3",
              "--batch-size", "8", "--max-genes", "32", "--eval-every", "3", "--eval-batches", "1",
              "--save-every", "3", "--eval-fraction", "0.1", "--model-overrides",
              '{"d_model": 32, "n_heads": 2, "d_ff": 64, "max_len": 64, "gepc_loss_weight": 0.5}'], nproc=2)
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["step"] == 3
    assert np.isfinite([metrics["train_last"]["gepc_loss"], metrics["eval_last"]["gepc_loss"]]).all()
    assert load_model(tmp_path / "ddp" / "checkpoint").gepc_head is not None


def test_train_fractions_are_nested_subsets(corpus):
    from gc_lib.model.data_loader import ShardIndex

    def cells(fraction):
        index = ShardIndex.build(corpus, split="train", eval_fraction=0.1, max_genes=32, train_fraction=fraction)
        return {(int(u), int(p)) for u in range(len(index.units))
                for p in index.pos[index.offsets[u]:index.offsets[u + 1]]}

    small, half, full = cells(0.25), cells(0.5), cells(1.0)
    assert small < half < full and abs(len(half) / len(full) - 0.5) < 0.12
    held = ShardIndex.build(corpus, split="eval", eval_fraction=0.1, max_genes=32)
    kept = json.loads((corpus / "manifest.json").read_text())["cells"]
    assert len(held) + len(full) == kept and len(held) > 0


def test_resuming_a_run_with_other_settings_is_refused(corpus, tmp_path):
    run(corpus, tmp_path / "r", stop_after=2)
    vocab_size = len(Tokenizer.load(corpus).vocab)
    other = ModelConfig.preset("tiny", vocab_size, d_model=32, n_heads=2, d_ff=64, max_len=64, dropout=0.1,
                               norm="post")
    with pytest.raises(ValueError, match="other settings .*model.norm"):
        pretrain(corpus, tmp_path / "r", other, TrainConfig(max_steps=8, batch_size=16, grad_accum=2, max_genes=32,
                 learning_rate=3e-3, warmup_steps=2, eval_every=4, eval_batches=2, log_every=1, save_every=4,
                 eval_fraction=0.1), progress=False)


def test_fsdp_strategy_trains_saves_and_resumes_on_two_ranks(corpus, tmp_path):
    args = ["-m", "gc_lib.model.pretrain", "--corpus", str(corpus), "--out", str(tmp_path / "fsdp"),
            "--strategy", "fsdp",
            "--batch-size", "8", "--max-genes", "32", "--eval-every", "2", "--eval-batches", "1", "--save-every", "2",
            "--log-every", "1",
            "--eval-fraction", "0.1", "--model-overrides",
            '{"d_model": 32, "n_heads": 2, "d_ff": 64, "max_len": 64, "gepc_loss_weight": 0.5}']   # GEPC sharded too
    torchrun([*args, "--max-steps", "2"], nproc=2)
    torchrun([*args, "--max-steps", "4"], nproc=2)          # extends the run: resumes from the step-2 checkpoint
    metrics = json.loads((tmp_path / "fsdp" / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["world_size"] == 2
    model = load_model(tmp_path / "fsdp" / "checkpoint")   # gathered into one ordinary checkpoint
    assert model.num_parameters() == metrics["parameters"]
    log = pd.read_csv(tmp_path / "fsdp" / "log.csv")
    assert list(log[log["split"] == "train"]["step"]) == [1, 2, 3, 4]
    assert log["gepc_loss"].notna().all() and model.config.gepc_loss_weight == 0.5


def save_grn_prior(corpus: Path, directory: Path, seed: int) -> None:
    from gc_lib.priors.store import align_to_vocab, save_prior

    vocab = Tokenizer.load(corpus).vocab
    human = pd.DataFrame(np.random.default_rng(seed).normal(size=(len(GENES), 3)), index=GENES)
    save_prior(align_to_vocab("grn", human, vocab), human, vocab, directory)


def test_resume_requires_the_runs_corpus_and_priors(corpus, tmp_path):
    save_grn_prior(corpus, tmp_path / "priors", seed=1)
    kw = dict(priors_dir=tmp_path / "priors", prior_names=("grn",))
    run(corpus, tmp_path / "r", stop_after=2, **kw)
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert set(record["inputs"]["priors"]) == {"grn"} and len(record["inputs"]["corpus"]) == 64
    save_grn_prior(corpus, tmp_path / "priors", seed=2)                        # the prior is rebuilt differently
    with pytest.raises(ValueError, match="prior 'grn' differs.*resume=False"):
        run(corpus, tmp_path / "r", **kw)
    save_grn_prior(corpus, tmp_path / "priors", seed=1)
    changed = build_test_corpus(tmp_path / "other", change_one_count=True)     # one count of one cell differs
    with pytest.raises(ValueError, match="the corpus differs"):
        run(changed, tmp_path / "r", **kw)
    assert run(corpus, tmp_path / "r", **kw)["step"] == 8                       # the run's own inputs: resumes


def test_fresh_start_deletes_only_its_own_runs(corpus, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="holds notes.txt, which no pretraining run writes"):
        run(corpus, folder, resume=False)
    assert (folder / "notes.txt").read_text() == "precious" and [p.name for p in folder.iterdir()] == ["notes.txt"]
    (folder / "notes.txt").unlink()
    (folder / "log.csv").write_text("mine\n")                                   # a run's name, but no run record
    with pytest.raises(ValueError, match="no run.json"):
        run(corpus, folder, resume=False)
    assert (folder / "log.csv").read_text() == "mine\n"
    run(corpus, tmp_path / "r", stop_after=1)
    (tmp_path / "r" / "tensorboard" / "extra").write_text("inside a run's own folder")
    (tmp_path / "r" / ".run.json.k3j9.tmp").mkdir()                           # a killed atomic write's debris
    run(corpus, tmp_path / "r", resume=False, stop_after=1)                   # its own run: replaced
    assert not (tmp_path / "r" / "tensorboard" / "extra").exists()
    assert run(corpus, tmp_path / "empty", resume=False, stop_after=1)["step"] == 1


def test_train_config_round_trips_through_checkpoints_and_run_records(corpus, tmp_path):
    from gc_lib.model.checkpoint import latest_checkpoint

    run(corpus, tmp_path / "r", stop_after=4)
    config = TrainConfig(max_steps=8, batch_size=16, grad_accum=2, max_genes=32, learning_rate=3e-3, warmup_steps=2,
                         eval_every=4, eval_batches=2, log_every=1, save_every=4, eval_fraction=0.1)
    assert TrainConfig.from_checkpoint(latest_checkpoint(tmp_path / "r")) == config
    assert TrainConfig.from_checkpoint(tmp_path / "r") == config               # the run's record
    model = ModelConfig.from_checkpoint(latest_checkpoint(tmp_path / "r"))
    assert model == ModelConfig.preset("tiny", model.vocab_size, d_model=32, n_heads=2, d_ff=64, max_len=64)
    with pytest.raises(FileNotFoundError, match="neither trainer_state.json"):
        TrainConfig.from_checkpoint(tmp_path)


def test_a_gepc_run_logs_its_term_and_resumes_exactly(corpus, tmp_path):
    run(corpus, tmp_path / "straight", gepc=1.0)
    run(corpus, tmp_path / "resumed", gepc=1.0, stop_after=3)
    run(corpus, tmp_path / "resumed", gepc=1.0)
    straight = pd.read_csv(tmp_path / "straight" / "log.csv")
    pd.testing.assert_frame_equal(straight.drop(columns="elapsed_s"),
                                  pd.read_csv(tmp_path / "resumed" / "log.csv").drop(columns="elapsed_s"))
    assert straight["gepc_loss"].notna().all() and (straight["gepc_loss"] > 0).all()
    assert load_model(tmp_path / "straight" / "checkpoint").config.gepc_loss_weight == 1.0
    with pytest.raises(ValueError, match="other settings .*model.gepc_loss_weight"):
        run(corpus, tmp_path / "straight", gepc=0.5)                       # the term's weight is part of the run


def test_a_run_from_before_the_gepc_option_resumes_with_it_off(corpus, tmp_path):
    """Its config.json has no gepc_loss_weight and its log.csv no gepc_loss column: both read as "off"."""
    from gc_lib.model.checkpoint import latest_checkpoint

    run(corpus, tmp_path / "r", stop_after=4)
    checkpoint = latest_checkpoint(tmp_path / "r")
    fields = json.loads((checkpoint / "config.json").read_text())
    del fields["gepc_loss_weight"]
    (checkpoint / "config.json").write_text(json.dumps(fields))
    pd.read_csv(tmp_path / "r" / "log.csv").drop(columns="gepc_loss").to_csv(tmp_path / "r" / "log.csv", index=False)
    assert run(corpus, tmp_path / "r")["step"] == 8
    log = pd.read_csv(tmp_path / "r" / "log.csv")
    assert log["step"].max() == 8 and log["gepc_loss"].isna().all() and log["loss"].notna().all()
