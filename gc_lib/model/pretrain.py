"""The pretraining run: corpus + priors in, logged losses and checkpoint directories out (DESIGN.md §2, §5).

:func:`pretrain` is the loop a notebook or ``torchrun`` calls; everything it does per step is in
:class:`gc_lib.model.trainer.Trainer`. Output directory::

    run.json                 the run's record, written when it starts: model and train configs, and the hashes of
                             its corpus and of each prior (what a resume must match); it marks the directory as a
                             run, the only kind ``resume=False`` will delete
    log.csv                  one row per logged step: split (train/eval), losses, accuracy, lr, tokens seen, time
    tensorboard/             the same numbers as TensorBoard events
    checkpoints/step-NNNNNNN/  the last ``keep_checkpoints`` checkpoints (gc_lib.model.checkpoint), for resuming
    checkpoint/              the final model: config.json, model.safetensors, vocab.json, metrics.json …

Rerunning into the same directory resumes from the newest checkpoint exactly: same batches, same masks, same
dropout, so the losses continue as if the run had never stopped (the log keeps only rows up to that step).
A resume is refused (``ValueError`` naming what differs) unless the model config, the training config (bar a
larger ``max_steps``), the corpus and every prior are those the run started with.

CLI (one process, or ``torchrun --nproc_per_node N -m gc_lib.model.pretrain ...``)::

    python -m gc_lib.model.pretrain --corpus data/01_corpus/corpus --priors data/02_prior_knowledge/priors \\
        --out runs/small --preset small --max-steps 2000 --batch-size 16
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
import time
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.atomic import write_json
from ..corpus.shards import manifest_digest
from ..corpus.vocab import Vocabulary
from ..priors.store import PRIOR_NAMES, load_priors
from .architecture import ModelConfig, build_model
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data_loader import PretrainDataset, PretrainLoader, held_out_loader
from .masking import MaskingCollator
from .trainer import Runtime, TrainConfig, Trainer, close_distributed, init_distributed

RUN_RECORD = "run.json"
RUN_FORMAT = "gc_lib.pretrain_run/1"
RUN_ENTRIES = {RUN_RECORD, "log.csv", "metrics.json", "tensorboard", "checkpoints", "checkpoint"}
_RUN_TEMPORARY = re.compile(r"^\.(run|metrics|checkpoint)\..*\.tmp(\.json)?$")  # debris of a killed atomic write
LOG_COLUMNS = ["step", "split", "loss", "id_loss", "value_loss", "id_accuracy", "gepc_loss", "lr", "grad_norm",
               "masked_tokens", "cells_seen", "tokens_seen", "elapsed_s"]   # gepc_loss: empty when the term is off


class RunLog:
    """``log.csv`` (appended row by row) and TensorBoard events, written by rank 0 only."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int):
        self.path, self.enabled, self.writer = out_dir / "log.csv", enabled, None
        if not enabled:
            return
        if self.path.exists():  # keep only what the resumed checkpoint had seen (in today's columns)
            kept = pd.read_csv(self.path)
            kept[kept["step"] <= resume_step].reindex(columns=LOG_COLUMNS).to_csv(self.path, index=False)
        else:
            self.path.write_text(",".join(LOG_COLUMNS) + "\n")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, LOG_COLUMNS, extrasaction="ignore").writerow(row)
        for key in ("loss", "id_loss", "value_loss", "id_accuracy", "gepc_loss", "lr"):
            if key in row:
                self.writer.add_scalar(f"{row['split']}/{key}", row[key], row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def with_priors(config: ModelConfig, priors: dict) -> ModelConfig:
    """``config`` with ``prior_dims`` set from the loaded prior tables."""
    return ModelConfig(**{**config.to_dict(), "prior_dims": {name: table.dim for name, table in priors.items()}})


def pretrain(corpus_dir, out_dir, model_config: ModelConfig, config: TrainConfig, *, priors_dir=None,
             prior_names: tuple[str, ...] | None = None, runtime: Runtime | None = None, resume: bool = True,
             stop_after: int | None = None, progress: bool = True) -> dict:
    """Pretrain on the corpus at ``corpus_dir`` into ``out_dir``; returns the final metrics.

    ``model_config.vocab_size`` must equal the corpus vocabulary's size. ``priors_dir`` + ``prior_names`` (default:
    all four) choose the priors (``prior_names=()`` for the no-prior ablation). ``resume=True`` continues the run in
    ``out_dir`` only if it has the same settings, corpus and priors (else a ``ValueError`` says what differs).
    ``resume=False`` starts afresh: the directory's previous run is deleted — only if it is one (it holds a
    ``run.json`` and nothing a run does not write); any other non-empty folder is refused. ``stop_after`` ends the
    run after that step, saving a checkpoint, as a time-boxed job or an interruption would; rerunning then resumes.
    """
    from tqdm.auto import tqdm

    runtime = runtime or init_distributed()
    out_dir = Path(out_dir)
    vocab = Vocabulary.load(Path(corpus_dir) / "vocab.json")
    if model_config.vocab_size != len(vocab):
        raise ValueError(f"model vocab_size {model_config.vocab_size} != corpus vocabulary {len(vocab)}")
    names = PRIOR_NAMES if prior_names is None else tuple(prior_names)
    priors = load_priors(priors_dir, vocab, names=names) if priors_dir is not None and names else {}
    model_config = with_priors(model_config, priors)
    inputs = run_inputs(corpus_dir, priors)
    if not resume:
        _clear_run(out_dir, runtime)
    out_dir.mkdir(parents=True, exist_ok=True)

    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        _check_same_run(checkpoint, model_config, config, inputs)
        finished = json.loads((checkpoint / "trainer_state.json").read_text())["step"] >= config.max_steps
        if finished and (out_dir / "metrics.json").exists():
            return json.loads((out_dir / "metrics.json").read_text())     # nothing left to do
    elif runtime.is_main:                                  # a run starts: record what it is made of
        write_json({"format": RUN_FORMAT, "corpus_dir": str(corpus_dir), "priors_dir": priors_dir and str(priors_dir),
                    "model_config": model_config.to_dict(), "train_config": config.to_dict(), "inputs": inputs},
                   out_dir / RUN_RECORD)

    torch.manual_seed(config.seed)
    trainer = Trainer(build_model(model_config, priors), config, runtime)
    data_options = dict(eval_fraction=config.eval_fraction, max_genes=config.max_genes, batch_size=config.batch_size,
                        seed=config.seed, rank=runtime.rank, world_size=runtime.world_size)
    loader = PretrainLoader(PretrainDataset(corpus_dir, split="train", train_fraction=config.train_fraction,
                                            **data_options),
                            MaskingCollator(len(vocab), seed=config.seed), num_workers=config.num_workers)
    held_out = held_out_loader(corpus_dir, len(vocab), **data_options)
    state = {"cells_seen": 0, "tokens_seen": 0, "elapsed_s": 0.0}
    if checkpoint is not None:
        saved, weights, optimizer_state = load_checkpoint(checkpoint)
        trainer.load_model_state(weights)
        trainer.load_optimizer_state(optimizer_state)
        trainer.step_count = saved["step"]
        loader.load_state_dict(saved["loader"])
        state = {k: saved[k] for k in state}
    log = RunLog(out_dir, runtime.is_main, trainer.step_count)
    metrics = {"model": model_config.to_dict(), "train": config.to_dict(), "world_size": runtime.world_size,
               "parameters": trainer.module.num_parameters(), "device": str(runtime.device)}

    def next_batches(stream):
        batches = list(islice(stream, config.grad_accum))
        while len(batches) < config.grad_accum:            # the epoch ended: the loader moves to the next one
            stream = iter(loader)
            batches += list(islice(stream, config.grad_accum - len(batches)))
        return batches, stream

    def evaluate() -> dict:
        result = trainer.evaluate(islice(iter(held_out), config.eval_batches))
        row = {"step": trainer.step_count, "split": "eval", **result, **state}
        log.write(row)
        return result

    def save(final: bool) -> None:
        full, optimizer_state = trainer.full_state(), trainer.optimizer_state()   # collective under FSDP
        if not runtime.is_main:
            return
        trainer_state = {"step": trainer.step_count, "loader": loader.state_dict(), **state,
                         "train_config": config.to_dict(), "inputs": inputs}
        name = checkpoint_dir(out_dir, trainer.step_count)
        save_checkpoint(name, trainer.module, optimizer_state, vocab, trainer_state, metrics, model_state=full)
        for old in sorted((out_dir / "checkpoints").glob("step-*"))[:-config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        if final:
            tokenizer_files = [Path(corpus_dir) / n for n in ("medians.parquet", "tokenizer.json")]
            save_checkpoint(out_dir / "checkpoint", trainer.module, optimizer_state, vocab, trainer_state, metrics,
                            model_state=full, extra_files=tokenizer_files)  # Tokenizer.load(checkpoint) works

    stream = iter(loader)
    bar = tqdm(total=config.max_steps, initial=trainer.step_count, desc="pretraining", disable=not (
        progress and runtime.is_main))
    start = time.perf_counter() - state["elapsed_s"]
    while trainer.step_count < config.max_steps:
        batches, stream = next_batches(stream)
        result = trainer.step(batches)
        for b in batches:
            state["cells_seen"] += int(b["species"].numel()) * runtime.world_size
            state["tokens_seen"] += int(b["attention_mask"].sum()) * runtime.world_size
        state["elapsed_s"] = round(time.perf_counter() - start, 3)
        step = trainer.step_count
        if step % config.log_every == 0 or step == config.max_steps:
            log.write({"step": step, "split": "train", **result, **state})
            metrics["train_last"] = result
        if (config.eval_every and step % config.eval_every == 0) or step == config.max_steps:
            metrics["eval_last"] = evaluate()
        if step % config.save_every == 0 or step == config.max_steps:
            metrics.update(step=step, **state)
            save(final=step == config.max_steps)
        bar.update(1)
        bar.set_postfix(loss=f"{result['loss']:.3f}")
        if stop_after is not None and step >= stop_after:
            if step % config.save_every:
                metrics.update(step=step, **state)
                save(final=False)
            break
    bar.close()
    log.close()
    if runtime.is_main:
        write_json(metrics, out_dir / "metrics.json")
    return metrics


def corpus_hash(corpus_dir) -> str:
    """sha256 of what a corpus feeds a run, from its ``manifest.json``: the vocabulary hash and each shard's file
    name and content digest (recorded when the shard was written; :func:`gc_lib.corpus.shards.manifest_digest`).
    Not the creation time or source paths, so an identical rebuild still matches; the shards are not re-read (a
    corpus can be hundreds of GB)."""
    path = Path(corpus_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{corpus_dir} holds no finished corpus (no manifest.json); run build_corpus")
    manifest = json.loads(path.read_text())
    vocab_hash = manifest.get("vocabulary", {}).get("hash") or manifest.get("vocabulary_hash")
    payload = {"vocabulary": vocab_hash, "shards": [[s["file"], manifest_digest(s)] for s in manifest["shards"]]}
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def prior_hash(table) -> str:
    """sha256 of a loaded :class:`~gc_lib.priors.store.PriorTable`'s name, vectors and mask: the values the model
    gets, whatever file they came from."""
    vectors = np.ascontiguousarray(table.vectors, dtype=np.float32)
    digest = hashlib.sha256(f"{table.name}:{vectors.shape}".encode())
    digest.update(vectors.data)
    digest.update(np.ascontiguousarray(table.mask, dtype=bool).data)
    return digest.hexdigest()


def run_inputs(corpus_dir, priors: dict) -> dict:
    """The record of a run's data: ``{"corpus": corpus_hash, "priors": {name: prior_hash}}``."""
    return {"corpus": corpus_hash(corpus_dir), "priors": {name: prior_hash(t) for name, t in sorted(priors.items())}}


def _check_same_run(checkpoint: Path, model_config: ModelConfig, config: TrainConfig, inputs: dict) -> None:
    """Refuse to resume a run of another model or schedule (``max_steps`` may grow: a run can be extended), or one
    trained on another corpus or other priors."""
    run_dir = checkpoint.parent.parent
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    # fields a run's gc_lib did not have yet read as their defaults (e.g. gepc_loss_weight 0: the term off)
    saved, mine = as_stored(TrainConfig.from_dict(state["train_config"]).to_dict()), as_stored(config.to_dict())
    differ = sorted(k for k in mine if k not in ("max_steps",) and saved.get(k) != mine[k])
    saved_model = as_stored(ModelConfig.from_checkpoint(checkpoint).to_dict())
    differ += sorted(f"model.{k}" for k, v in as_stored(model_config.to_dict()).items() if saved_model.get(k) != v)
    if differ:
        raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(differ)}); "
                         f"resume=False (CLI --fresh) starts afresh there")
    recorded = state.get("inputs")
    if recorded is None and (run_dir / RUN_RECORD).exists():
        recorded = json.loads((run_dir / RUN_RECORD).read_text()).get("inputs")
    if recorded is None:
        raise ValueError(f"{run_dir} records no hashes of its corpus and priors (a run started by an older gc_lib), "
                         f"so resuming it on these cannot be checked; resume=False (CLI --fresh) starts afresh there")
    changed = _input_differences(recorded, inputs)
    if changed:
        raise ValueError(f"{run_dir} was trained on other inputs: {'; '.join(changed)}. Resume with the run's corpus "
                         f"and priors, or start afresh with resume=False (CLI --fresh), which deletes that run")


def as_stored(fields: dict) -> dict:
    """``fields`` after a JSON round trip (tuples → lists), as configs are stored in checkpoints."""
    return json.loads(json.dumps(fields))


def _input_differences(recorded: dict, inputs: dict) -> list[str]:
    """What differs between a run's recorded inputs and these: the corpus, and each prior by name."""
    differ = []
    if recorded.get("corpus") != inputs["corpus"]:
        differ.append(f"the corpus differs (manifest hash {inputs['corpus']:.12}…, the run's "
                      f"{str(recorded.get('corpus')):.12}…)")
    old, new = recorded.get("priors", {}), inputs["priors"]
    for name in sorted(set(old) | set(new)):
        if name not in old:
            differ.append(f"prior {name!r} was not used by the run")
        elif name not in new:
            differ.append(f"prior {name!r} of the run is missing")
        elif old[name] != new[name]:
            differ.append(f"prior {name!r} differs (hash {new[name]:.12}…, the run's {old[name]:.12}…)")
    return differ


def _clear_run(out_dir: Path, runtime: Runtime) -> None:
    """Delete the previous run in ``out_dir`` for ``resume=False``; refuse (``ValueError``, nothing deleted) when
    the folder is not a run. Every rank looks before rank 0 deletes, so all ranks agree."""
    problem = _not_a_run(out_dir)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    if problem:
        raise ValueError(problem)
    if runtime.is_main and out_dir.exists():
        shutil.rmtree(out_dir)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()                        # no rank reads the directory while rank 0 clears it


def _not_a_run(out_dir: Path) -> str | None:
    """Why ``out_dir`` must not be deleted as a run (None: absent, empty, or a run of :func:`pretrain`).

    A run holds only what :func:`pretrain` writes (``RUN_ENTRIES`` and temporaries of atomic writes) and either
    its ``run.json`` or, for runs started before that record existed, a finished checkpoint."""
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        return f"out_dir {out_dir} is a file, not a run directory"
    names = sorted(p.name for p in out_dir.iterdir())
    foreign = [n for n in names if n not in RUN_ENTRIES and not _RUN_TEMPORARY.match(n)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return (f"resume=False would delete {out_dir}, but it holds {shown}, which no pretraining run writes; "
                f"refusing. Choose another out_dir, or move those out first")
    if names and not _has_run_record(out_dir):
        return (f"resume=False would delete {out_dir}, but it holds no {RUN_RECORD} or checkpoint of a pretraining "
                f"run ({', '.join(names)}); refusing. Choose another out_dir, or empty it first")
    return None


def _has_run_record(out_dir: Path) -> bool:
    record = out_dir / RUN_RECORD
    if record.exists():
        try:
            return json.loads(record.read_text()).get("format") == RUN_FORMAT
        except (ValueError, AttributeError):
            return False
    return latest_checkpoint(out_dir) is not None or (out_dir / "checkpoint" / "trainer_state.json").exists()


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return out_dir / "checkpoints" / f"step-{step:07d}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain GeneCompass on a tokenised corpus (gc_lib).")
    parser.add_argument("--corpus", required=True, help="corpus directory (gc_lib.corpus.builder.build_corpus)")
    parser.add_argument("--out", required=True, help="run directory (resumed when it holds a checkpoint)")
    parser.add_argument("--priors", help="prior directory written by notebook 02 (omit: no priors)")
    parser.add_argument("--prior-names", default=",".join(PRIOR_NAMES), help="comma-separated priors")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument("--model-overrides", default="{}", help="JSON of ModelConfig fields, e.g. {\"norm\": \"post\"}")
    parser.add_argument("--fresh", action="store_true",
                        help="start afresh: delete the previous run there (only a run directory, one with run.json)")
    for field_name, default in TrainConfig().to_dict().items():
        if isinstance(default, (int, float, str)) and not isinstance(default, bool):
            parser.add_argument(f"--{field_name.replace('_', '-')}", type=type(default), default=default)
        elif isinstance(default, bool):
            parser.add_argument(f"--{field_name.replace('_', '-')}", type=lambda s: s.lower() in ("1", "true", "yes"),
                                default=default)
    args = parser.parse_args(argv)
    fields = {k: getattr(args, k) for k in TrainConfig().to_dict() if hasattr(args, k)}
    vocab = Vocabulary.load(Path(args.corpus) / "vocab.json")
    model_config = ModelConfig.preset(args.preset, len(vocab), **json.loads(args.model_overrides))
    names = tuple(n for n in args.prior_names.split(",") if n) if args.priors else ()
    metrics = pretrain(args.corpus, args.out, model_config, TrainConfig(**fields), priors_dir=args.priors,
                       prior_names=names, resume=not args.fresh)
    close_distributed()                        # every rank done (rank 0 writes last) before the group goes away
    print(json.dumps({k: metrics.get(k) for k in ("step", "train_last", "eval_last")}, default=str))


if __name__ == "__main__":
    main()
