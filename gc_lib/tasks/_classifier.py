"""Classifiers on top of the GeneCompass encoder, and their checkpoints (DESIGN.md §1, downstream tasks).

- ``task="cell"``: one prediction per cell, from the final hidden state of the cell (species) token, or the mean
  of all its tokens' (``pooling``);
- ``task="gene"``: one prediction per gene token, from each token's final hidden state.

The head standardises what it reads (a shift and scale fitted on training features, saved with it) before a
linear layer — or, for heads saved before that existed, a hidden layer (``hidden``), unstandardised.

A fine-tuned checkpoint is a pretraining checkpoint directory with two more files, so everything that reads a
checkpoint reads it too (``gc_lib.embed`` embeds with the fine-tuned encoder, ``Tokenizer.load`` tokenises)::

    config.json  model.safetensors            the encoder (same keys as a pretrained model, priors included)
    vocab.json  tokenizer.json  medians.parquet   copied from the pretrained checkpoint
    head.safetensors                          the classification head
    finetune.json                             task, classes (in output order), head size, training record
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ..core.atomic import atomic_path, write_json
from ..inputs.fetch import sha256_file
from ..model.architecture import GeneCompass, load_model, save_model
from .embedding import POOLINGS, pool

TASKS = ("cell", "gene")
TOKENIZER_FILES = ("vocab.json", "tokenizer.json", "medians.parquet")
FORMAT = "gc_lib.classifier/1"


class ClassifierHead(nn.Module):
    """Standardise → Dropout → Linear (``hidden=False``), or Standardise → Dropout → Linear → GELU → Dropout →
    Linear (``hidden=True``, the head before the standardised linear one): hidden state (…, d_model) to class
    logits (…, n_classes).

    Standardise subtracts ``shift`` and divides by ``scale`` (buffers, saved with the head; identity until
    :meth:`standardise` fits them on training features). It is the linear probe's ``StandardScaler``: the encoder's
    cell states share one large common vector and differ between cells by ~6 % of their norm (per-feature
    standard deviation ~0.05 beside values of order 1, pbmc68k on the local model), so an unstandardised head
    sees nearly constant inputs and trains slowly (see :mod:`gc_lib.tasks._finetune_loop`)."""

    def __init__(self, d_model: int, n_classes: int, dropout: float = 0.1, *, hidden: bool = False):
        super().__init__()
        self.register_buffer("shift", torch.zeros(d_model))
        self.register_buffer("scale", torch.ones(d_model))
        layers = [nn.Dropout(dropout), nn.Linear(d_model, d_model), nn.GELU()] if hidden else []
        self.net = nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(d_model, n_classes))
        self.hidden = hidden

    @property
    def linear(self) -> nn.Linear:
        """The output layer (for a head without ``hidden``, the whole learned map)."""
        return self.net[-1]

    @torch.no_grad()
    def standardise(self, features: torch.Tensor) -> None:
        """Set ``shift``/``scale`` to the mean and standard deviation of ``features`` (n, d_model) per dimension;
        a dimension that does not vary keeps scale 1 (as scikit-learn's ``StandardScaler``)."""
        std = features.float().std(0, unbiased=False)
        self.shift.copy_(features.float().mean(0))
        self.scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # in float32 even under bf16 autocast: the between-cell differences sit in the low bits of the states
        return self.net((hidden.float() - self.shift) / self.scale)


class Classifier(nn.Module):
    """The encoder of a :class:`GeneCompass` model plus a :class:`ClassifierHead` for ``task`` ("cell"/"gene")."""

    def __init__(self, encoder: GeneCompass, task: str, classes: list[str], *, dropout: float = 0.1,
                 pooling: str = "cell", hidden: bool = False):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}; got {task!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"a classifier needs at least two distinct classes; got {classes}")
        self.encoder, self.task, self.classes = encoder, task, list(classes)
        self.head = ClassifierHead(encoder.config.d_model, len(classes), dropout, hidden=hidden)
        self.dropout, self.pooling = dropout, pooling
        self.frozen_blocks: int | None = None    # set by freeze(): blocks whose output is fixed, None if none is

    def features(self, input_ids, values, species, attention_mask=None, *, states=None) -> torch.Tensor:
        """What the head reads: (B, d_model) per cell, (B, L, d_model) per gene token (padding included).

        Cells are read from the cell (species) token (``pooling="cell"``, the paper's choice) or from the mean of
        the cell token and every real gene token (``"mean"``). ``states``: the frozen part's output for these cells
        (:meth:`frozen_states`), computed earlier; the encoder then runs only its trainable blocks."""
        if states is None:
            hidden = self.encoder.encode(input_ids, values, species, attention_mask)
        else:
            hidden = self.encoder.encode_from(states, attention_mask, first_block=self.frozen_blocks)
        if self.task == "gene":
            return hidden[:, 1:]
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[0], hidden.shape[1] - 1, dtype=torch.bool, device=hidden.device)
        return pool(hidden, attention_mask, self.pooling)

    @torch.no_grad()
    def frozen_states(self, input_ids, values, species, attention_mask=None) -> torch.Tensor:
        """The output of the frozen input embedding and first :attr:`frozen_blocks` blocks (B, 1 + L, d_model), in
        the encoder's current mode: what :meth:`features` takes as ``states``."""
        if self.frozen_blocks is None:
            raise ValueError("the input embedding is trained, so no part of the encoder is frozen to precompute")
        x = self.encoder.embed_tokens(input_ids, values, species)
        return self.encoder.encode_from(x, attention_mask, stop_block=self.frozen_blocks)

    def forward(self, input_ids, values, species, attention_mask=None, *, states=None) -> torch.Tensor:
        """Logits: (B, n_classes) for cells, (B, L, n_classes) for gene tokens (padding positions included);
        ``states`` as in :meth:`features`."""
        return self.head(self.features(input_ids, values, species, attention_mask, states=states))

    def freeze(self, *, layers: int = 0, embeddings: bool = False, head_only: bool = False) -> None:
        """Stop gradients into the input embedding (with ``embeddings``, or whenever ``layers`` > 0) and the first
        ``layers`` encoder blocks, or into the whole encoder with ``head_only``. The pretraining heads (MLM, and
        GEPC when built) are never trained here. :attr:`frozen_blocks` records the frozen blocks when the input
        embedding is frozen (None when it trains): their output is fixed, so training may precompute it."""
        encoder = self.encoder
        if not 0 <= layers <= len(encoder.blocks):
            raise ValueError(f"freeze layers must lie in [0, {len(encoder.blocks)}]; got {layers}")
        encoder.requires_grad_(not head_only)
        for module in encoder.pretraining_heads():
            module.requires_grad_(False)
        encoder.id_bias.requires_grad_(False)
        self.frozen_blocks = len(encoder.blocks) if head_only else layers if (layers or embeddings) else None
        if self.frozen_blocks is not None and not head_only:
            for module in (encoder.genes, encoder.positions, encoder.embed_norm, *encoder.blocks[:layers]):
                module.requires_grad_(False)


SOURCE_FILES = ("config.json", "model.safetensors", *TOKENIZER_FILES)


def source_hashes(checkpoint: str | os.PathLike) -> dict[str, str]:
    """sha256 of each file of a pretrained checkpoint that decides what fine-tuning produces: the weights and config
    (``model.safetensors``, ``config.json``) and the tokenizer (``vocab.json``, ``tokenizer.json``,
    ``medians.parquet``). Content, not path or time: re-pretraining into the same folder changes them.

    Recomputed on every call, not cached: a cache keyed by file metadata (inode, size, times) can miss a rewrite
    within one timestamp tick, and one sequential read of the weights (~1 s per 500 MB) is small beside a fit."""
    checkpoint = Path(checkpoint)
    missing = [name for name in SOURCE_FILES if not (checkpoint / name).exists()]
    if missing:
        raise FileNotFoundError(f"{checkpoint} lacks {', '.join(missing)}: not a pretraining checkpoint directory")
    return {name: sha256_file(checkpoint / name) for name in SOURCE_FILES}


def reuse_differences(record: dict, key: dict) -> list[str]:
    """What keeps a saved fit (its ``finetune.json`` ``record``) from being reused for a new one described by
    ``key`` (``source_hashes``, ``task``, ``config``, ``data_fingerprint``): "weights" (naming the pretrained files
    that changed), "settings", "data"; empty when it can be reused."""
    differ = []
    old = record.get("source_hashes") or {}
    changed = [name for name, digest in key["source_hashes"].items() if old.get(name) != digest]
    if changed:
        differ.append(f"weights (pretrained {', '.join(changed)} changed)")
    if record.get("task") != key["task"] or record.get("config") != key["config"]:
        differ.append("settings")
    if record.get("data_fingerprint") != key["data_fingerprint"]:
        differ.append("data")
    return differ


def fresh_encoder_like(encoder: GeneCompass, seed: int) -> GeneCompass:
    """A newly initialised encoder of the same configuration with the same prior buffers: the "without
    pretraining" control keeps the prior knowledge (fixed inputs) and loses only what pretraining learned."""
    torch.manual_seed(seed)
    fresh = GeneCompass(encoder.config)
    fresh.load_state_dict({name: buffer for name, buffer in encoder.named_buffers()}, strict=False)
    return fresh


def save_classifier(classifier: Classifier, directory: str | os.PathLike, *, source: str | os.PathLike,
                    record: dict | None = None) -> Path:
    """Write ``classifier`` as a fine-tuned checkpoint (see the module docstring); ``source`` is the pretrained
    checkpoint whose tokenizer files are copied; ``record`` (JSON-able) goes into ``finetune.json``."""
    from safetensors.torch import save_file

    directory, source = Path(directory), Path(source)
    directory.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if not (source / name).exists():
            raise FileNotFoundError(f"{source} lacks {name}: not a pretraining checkpoint directory")
        if source.resolve() != directory.resolve():
            with atomic_path(directory / name) as tmp:
                shutil.copyfile(source / name, tmp)
    save_model(classifier.encoder, directory)
    head = {k: v.detach().contiguous().cpu() for k, v in classifier.head.state_dict().items()}
    with atomic_path(directory / "head.safetensors") as tmp:
        save_file(head, str(tmp), metadata={"format": FORMAT})
    write_json({"format": FORMAT, "task": classifier.task, "classes": classifier.classes,
                "head": {"d_model": classifier.encoder.config.d_model, "dropout": classifier.dropout,
                         "pooling": classifier.pooling, "hidden": classifier.head.hidden},
                "source_checkpoint": str(source), **(record or {})}, directory / "finetune.json")
    return directory


def load_classifier(directory: str | os.PathLike, *, map_location: str = "cpu") -> tuple[Classifier, dict]:
    """A classifier saved by :func:`save_classifier` and its ``finetune.json`` record."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / "finetune.json").exists():
        raise FileNotFoundError(f"{directory} holds no fine-tuned classifier (no finetune.json); "
                                f"a pretrained checkpoint must be fine-tuned first")
    record = json.loads((directory / "finetune.json").read_text())
    head = record["head"]
    # records without "hidden" predate the standardised linear head: theirs was the hidden-layer head, unstandardised
    classifier = Classifier(load_model(directory, map_location=map_location), record["task"], record["classes"],
                            dropout=head["dropout"], pooling=head.get("pooling", "cell"),
                            hidden=head.get("hidden", True))
    state = load_file(str(directory / "head.safetensors"), device=map_location)
    missing, unexpected = classifier.head.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"shift", "scale"}:
        raise ValueError(f"{directory / 'head.safetensors'} does not fit its finetune.json head {head}: missing "
                         f"{sorted(missing)}, unexpected {sorted(unexpected)}")
    return classifier, record
