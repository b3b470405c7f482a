"""Training checkpoints as directories, without pickles (DESIGN.md §4).

    <dir>/config.json          the model config           ┐ what :func:`gc_lib.model.architecture.load_model` reads:
    <dir>/model.safetensors    weights and prior buffers  ┘ a checkpoint is also a plain model directory
    <dir>/vocab.json           the vocabulary the model was trained on
    <dir>/optimizer.safetensors  AdamW moments and step counts, flattened to named tensors
    <dir>/trainer_state.json   step, data-loader position, optimizer hyper-parameters, the TrainConfig
                               (:meth:`TrainConfig.from_checkpoint`), hashes of the corpus and priors trained on
    <dir>/rng.safetensors      torch CPU (and CUDA) generator states, so dropout continues exactly
    <dir>/metrics.json         the last logged train and held-out losses

The directory is written under a temporary name and renamed when complete, so a crash never leaves a
checkpoint that looks finished. ``torch.save`` (a pickle) is never used.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..core.atomic import atomic_path, write_json
from ..corpus.vocab import Vocabulary
from .architecture import GeneCompass, save_model

_SEP = "::"  # between a parameter key (an index, or a dotted name under FSDP) and its state's name


def flatten_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """An optimizer state dict as named tensors (for safetensors) and its JSON-able param groups."""
    tensors = {}
    for key, values in state["state"].items():
        for name, value in values.items():
            tensors[f"{key}{_SEP}{name}"] = torch.as_tensor(value).detach().contiguous().cpu()
    return tensors, state["param_groups"]


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    """The inverse of :func:`flatten_optimizer_state` (integer keys come back as integers)."""
    state: dict = {}
    for flat, value in tensors.items():
        key, name = flat.split(_SEP, 1)
        state.setdefault(int(key) if key.isdigit() else key, {})[name] = value
    return {"state": state, "param_groups": groups}


def rng_states() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = s
    return states


def set_rng_states(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted(states) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(directory: str | os.PathLike, model: GeneCompass, optimizer_state: dict,
                    vocab: Vocabulary, trainer_state: dict, metrics: dict,
                    model_state: dict[str, torch.Tensor] | None = None, extra_files=()) -> Path:
    """Write a complete checkpoint directory atomically (replacing one of the same name).

    ``optimizer_state``: ``optimizer.state_dict()``, or the full state gathered from FSDP shards;
    ``model_state`` overrides ``model.state_dict()`` (e.g. a full state gathered from FSDP shards);
    ``extra_files`` are copied in (e.g. the tokenizer's ``medians.parquet`` and ``tokenizer.json``).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    with atomic_path(directory, is_dir=True) as tmp:
        save_model(model, tmp, state=model_state)
        vocab.save(tmp / "vocab.json")
        tensors, groups = flatten_optimizer_state(optimizer_state)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        save_file({k: v.contiguous() for k, v in rng_states().items()}, str(tmp / "rng.safetensors"))
        write_json({**trainer_state, "optimizer_param_groups": groups}, tmp / "trainer_state.json")
        write_json(metrics, tmp / "metrics.json")
        for path in extra_files:
            shutil.copyfile(path, tmp / Path(path).name)
    return directory


def load_checkpoint(directory: str | os.PathLike, *, restore_rng: bool = True) -> tuple[dict, dict, dict]:
    """The trainer state, the model weights and the optimizer state dict of a checkpoint (all on CPU; the
    caller loads them, or scatters them to FSDP shards); restores the RNG states."""
    from safetensors.torch import load_file

    directory = Path(directory)
    state = json.loads((directory / "trainer_state.json").read_text())
    weights = load_file(str(directory / "model.safetensors"))
    optimizer_state = unflatten_optimizer_state(load_file(str(directory / "optimizer.safetensors")),
                                                state.pop("optimizer_param_groups"))
    if restore_rng:
        set_rng_states(load_file(str(directory / "rng.safetensors")))
    return state, weights, optimizer_state


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest finished ``step-*`` checkpoint under ``run_dir/checkpoints`` (None if there is none)."""
    root = Path(run_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step-*") if (p / "trainer_state.json").exists()) if root.exists() else []
    return done[-1] if done else None
