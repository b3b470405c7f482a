"""Fine-tuning: cell classification (e.g. cell types) and gene-token classification (e.g. dosage sensitivity).

    from gc_lib import finetune
    run = finetune.fit_cell_classifier(train_cells, "cell_type", "data/03_pretraining/runs/main/checkpoint",
                                       "data/05_cell_type_annotation/model")
    finetune.predict_cells(test_cells, run.directory, key_added="predicted")   # obs["predicted"],
                                                                                # obsm["predicted_probabilities"]

What a fit does: load the pretrained encoder (or, with ``from_scratch``, a fresh one with the same prior
buffers — the "without pretraining" control), put a :class:`~gc_lib.tasks._classifier.ClassifierHead` on it, optionally
freeze the first layers or the whole encoder, then (:mod:`gc_lib.tasks._finetune_loop`) standardise the head's input
on the training features and start it as the linear probe (a logistic regression on them), and train with AdamW
(separate learning rates for encoder and head, warm-up then cosine), class-weighted cross-entropy, the encoder's
dropout off, and **early stopping** on a validation split carved from the training data (cells stratified by label;
for genes, whole genes), the untrained probe start competing as epoch 0. The best epoch's weights are restored and
saved as a checkpoint directory (:mod:`gc_lib.tasks._classifier`). Expression values stay floats and each cell keeps
its own species token throughout (:mod:`gc_lib.tasks.cell_tokens`). Only the gene-ID embedding rows the training
cells reach are trained, with the same updates as dense AdamW and less work (:mod:`gc_lib.tasks._trained_rows`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from ..corpus.tokenizer import Tokenizer
from ..model.architecture import ModelConfig, load_model
from ._classifier import (
    Classifier,
    fresh_encoder_like,
    load_classifier,
    reuse_differences,
    save_classifier,
    source_hashes,
)
from ._finetune_loop import IGNORE, device_of, train
from ._finetune_loop import class_weights as _class_weights
from .cell_tokens import CellTokens, collate, length_batches

log = logging.getLogger(__name__)
HEADS = ("linear", "mlp")


@dataclass
class FinetuneConfig:
    """Fine-tuning settings. The defaults marked † were chosen on pbmc68k_reduced (700 PBMCs, 10 labels) with the
    local profile's model (notebook 03: tiny preset, 1,000 steps) and notebook 05's local sizes (8 epochs, 256
    genes, batch 16): per seed 0–2 of notebook 05's splits (``baselines.stratified_splits``, test 0.3), 20 % of the
    *training* cells were held out as a selection set (the test cells were never used), and macro-F1 on it decided.
    There the old defaults (hidden-layer head on raw cell-token states, encoder dropout on, patience 3) scored
    0.08 against 0.20 for the linear probe on the same frozen states; the numbers behind each default are in
    :mod:`gc_lib.tasks._finetune_loop`. † defaults change the reuse key, so models fitted before are refitted."""
    epochs: int = 10                    # passes over the training data (early stopping may end sooner)
    batch_size: int = 16                # cells per step
    max_genes: int | None = None        # gene tokens per cell (None: what the model takes)
    learning_rate: float = 1e-4         # peak learning rate of the encoder (1e-5: less disruption, lower end score)
    head_learning_rate: float = 1e-3    # peak learning rate of the classification head
    weight_decay: float = 0.01          # AdamW, on weight matrices
    warmup_fraction: float = 0.1        # share of all steps spent warming up (then cosine to 10 %; 0.3: no better)
    freeze_layers: int = 0              # freeze the input embedding and the first k encoder blocks
    freeze_embeddings: bool = False     # † freeze the input embedding (gene ids, values, priors, positions) alone;
                                        #   selection macro-F1 0.412 vs 0.439 training all (freeze_layers=1 0.337).
                                        #   Freezing applies to pretrained weights: with from_scratch every layer
                                        #   trains (frozen random weights would be no control); head_only holds
    cache_frozen: bool = True           # compute a frozen input embedding's (and blocks') output once per cell
                                        #   (exact in eval mode; speed only; up to FROZEN_STATES_BYTES of RAM)
    head_only: bool = False             # freeze the whole encoder: train only the head
    class_weight: str | None = "balanced"  # "balanced": weight classes by n / (n_classes × n_class); None: equal
    validation_fraction: float = 0.15   # share of the training cells (or genes) held out for early stopping
    patience: int | None = None         # † epochs without a better validation loss before stopping; None: train
                                        #   every epoch (the best, epoch 0 included, is kept either way). Fine-tuning
                                        #   from the probe first gets worse for 2–6 epochs, so 3 stopped at the probe
    head_dropout: float = 0.1           # dropout inside the head
    encoder_dropout: bool = False       # † keep the encoder's dropout on while training; its noise on the cell token
                                        #   is 5× the between-cell signal (local model), so off: eval mode
    pooling: str = "mean"               # † cells: the mean of all tokens ("mean") or the cell (species) token
                                        #   ("cell", the paper's); probe 0.46 vs 0.20, fine-tuned 0.44 vs 0.26
    head: str = "linear"                # † "linear" (standardise → dropout → linear) or "mlp" (a hidden layer first)
    standardise: bool = True            # † standardise the head's input with the training features' mean and sd
    probe_init: bool = True             # † start a linear head as the logistic regression on the frozen features
    from_scratch: bool = False          # re-initialise the encoder (keeps the priors): the no-pretraining control
    seed: int = 0                       # head init, validation split, batch order, dropout
    device: str | None = None           # None: CUDA when available
    bf16: bool = True                   # bf16 autocast on GPU

    def __post_init__(self):
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be 'balanced' or None; got {self.class_weight!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1); got {self.validation_fraction}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}; got {self.head!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be None or at least 1; got {self.patience}")
        if self.probe_init and self.head != "linear":
            raise ValueError("probe_init needs head='linear' (a logistic regression is a linear head)")


@dataclass
class FitResult:
    directory: Path                      # the fine-tuned checkpoint
    classes: list[str]
    history: pd.DataFrame                # per epoch: train_loss, val_loss (and val_accuracy for cells)
    best_epoch: int
    seconds: float


def _max_genes(checkpoint, config: FinetuneConfig) -> int:
    """Gene tokens per cell: ``config.max_genes``, at most what the checkpoint's model takes."""
    max_len = ModelConfig.from_checkpoint(checkpoint).max_len
    return min(config.max_genes or max_len - 1, max_len - 1)


def _build(checkpoint, task: str, classes: list[str], config: FinetuneConfig, vocab) -> Classifier:
    """The pretrained encoder (checked against the tokenizer's ``vocab``) with a new head, frozen as configured."""
    encoder = load_model(checkpoint, vocab=vocab)
    if config.from_scratch:
        encoder = fresh_encoder_like(encoder, config.seed)
    torch.manual_seed(config.seed)
    classifier = Classifier(encoder, task, classes, dropout=config.head_dropout, pooling=config.pooling,
                            hidden=config.head == "mlp")
    if config.from_scratch:
        classifier.freeze(head_only=config.head_only)
    else:
        classifier.freeze(layers=config.freeze_layers, embeddings=config.freeze_embeddings,
                          head_only=config.head_only)
    return classifier


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation split of positions (plain random when a class is too small to stratify)."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(labels))
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 and round(fraction * len(labels)) >= len(counts) else None
    train, val = train_test_split(positions, test_size=fraction, stratify=stratify, random_state=seed)
    return np.sort(train), np.sort(val)


def _fingerprint(cells: CellTokens, *labels) -> str:
    """sha256 of the training data as fed: the tokenised cells (ids, values, species) and the label arrays."""
    digest = hashlib.sha256(cells.fingerprint().encode())
    for part in labels:
        digest.update(json.dumps(np.asarray(part).astype(str).tolist()).encode())
    return digest.hexdigest()


def _reuse_key(checkpoint, task: str, config: FinetuneConfig, fingerprint: str) -> dict:
    """What a fit depends on, to decide reuse: the pretrained files' hashes, the task and settings, the data."""
    return {"source_hashes": source_hashes(checkpoint), "task": task, "config": json.loads(json.dumps(asdict(config))),
            "data_fingerprint": fingerprint}


def _reuse(out_dir, key: dict) -> FitResult | None:
    """The finished fit in ``out_dir`` when it was made from the same pretrained weights (by content), settings
    and data (:func:`~gc_lib.tasks._classifier.reuse_differences`); else None, logging what differed."""
    path = Path(out_dir) / "finetune.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    differ = reuse_differences(record, key)
    if differ:
        log.warning("%s: not reusing the fine-tuned model there, its %s differ; fitting again", out_dir,
                    " and ".join(differ))
        return None
    return FitResult(Path(out_dir), record["classes"], pd.DataFrame(record["history"]), record["best_epoch"],
                     record["seconds"])


def _record(config: FinetuneConfig, history: pd.DataFrame, best_epoch: int, weights: torch.Tensor, seconds: float,
            key: dict, **extra) -> dict:
    """``finetune.json``'s training record; it keeps the reuse key (pretrained hashes, data fingerprint)."""
    return {"config": asdict(config), "history": history.to_dict(orient="records"), "best_epoch": best_epoch,
            "class_weights": weights.tolist(), "seconds": round(seconds, 2),
            "source_hashes": key["source_hashes"], "data_fingerprint": key["data_fingerprint"], **extra}


def fit_cell_classifier(adata: AnnData, label_key: str, checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                        config: FinetuneConfig = FinetuneConfig(), *, reuse: bool = False,
                        progress: bool = True) -> FitResult:
    """Fine-tune a cell classifier on ``adata.obs[label_key]`` (all cells of ``adata`` are training data; a
    stratified ``validation_fraction`` of them is held out for early stopping) and save it to ``out_dir``.
    ``reuse``: return the fit already in ``out_dir`` if it was made from the same pretrained weights (compared by
    content), settings, tokenised cells and labels; otherwise fit again (a log line says what differed)."""
    if label_key not in adata.obs:
        raise KeyError(f"adata.obs has no column {label_key!r}; columns: {list(adata.obs.columns)}")
    labels = adata.obs[label_key]
    if labels.isna().any():
        raise ValueError(f"{int(labels.isna().sum())} cells have no {label_key!r} label; drop them first")
    start = time.perf_counter()
    labels = labels.astype(str).to_numpy()
    tokenizer, max_genes = Tokenizer.load(checkpoint), _max_genes(checkpoint, config)
    cells, overlap = CellTokens.from_adata(adata, tokenizer, max_genes)
    key = _reuse_key(checkpoint, "cell", config, _fingerprint(cells, labels))
    if reuse and (done := _reuse(out_dir, key)):
        return done
    classes = sorted(set(labels))
    classifier = _build(checkpoint, "cell", classes, config, tokenizer.vocab)
    target = np.searchsorted(classes, labels)
    train_index, val_index = _split(target, config.validation_fraction, config.seed)
    weights = _class_weights(target[train_index], len(classes), config.class_weight)
    history, best = train(classifier, cells, lambda index, ids, split: torch.from_numpy(target[index]),
                           train_index, val_index, weights, config, progress)
    seconds = time.perf_counter() - start
    directory = save_classifier(classifier.cpu(), out_dir, source=checkpoint, record=_record(
        config, history, best, weights, seconds, key, label_key=label_key, max_genes=max_genes, gene_overlap=overlap,
        n_train=len(train_index), n_validation=len(val_index)))
    return FitResult(directory, classes, history, best, seconds)


def _probabilities(classifier: Classifier, cells: CellTokens, batch_size: int, device: torch.device):
    """Softmax outputs batch by batch: yields (cell index, input_ids, probabilities) on CPU."""
    classifier.to(device).eval()
    with torch.no_grad():
        for index in length_batches(cells.lengths(), batch_size):
            batch = {k: v.to(device) for k, v in collate(cells, index, pad_id=classifier.encoder.config.pad_id).items()}
            yield index, batch["input_ids"].cpu(), classifier(**batch).float().softmax(-1).cpu()


def predict_cells(adata: AnnData, directory: str | os.PathLike, *, key_added: str = "genecompass_prediction",
                  batch_size: int = 64, device: str | None = None, copy: bool = False) -> AnnData | None:
    """Predict the cells of ``adata`` with the fine-tuned cell classifier at ``directory``, scanpy-style:
    ``obs[key_added]`` (categorical, the classes in training order), ``obsm[f"{key_added}_probabilities"]``
    (n_cells × n_classes) and ``uns[key_added]`` (classes, checkpoint). Mouse and human cells may be mixed: each
    gets its own species token and genes are looked up in that species' vocabulary."""
    adata = adata.copy() if copy else adata
    classifier, record = load_classifier(directory)
    if classifier.task != "cell":
        raise ValueError(f"{directory} holds a {classifier.task} classifier, not a cell classifier")
    cells, overlap = CellTokens.from_adata(adata, Tokenizer.load(directory), record["max_genes"])
    probabilities = np.zeros((adata.n_obs, len(classifier.classes)), dtype=np.float32)
    for index, _, probs in _probabilities(classifier, cells, batch_size, device_of(device)):
        probabilities[index] = probs.numpy()
    adata.obs[key_added] = pd.Categorical(np.asarray(classifier.classes)[probabilities.argmax(1)],
                                          categories=classifier.classes)
    adata.obsm[f"{key_added}_probabilities"] = probabilities
    adata.uns[key_added] = {"classes": list(classifier.classes), "checkpoint": str(directory), "gene_overlap": overlap}
    return adata if copy else None


def fit_gene_classifier(cells: CellTokens, token_labels: pd.Series, checkpoint: str | os.PathLike,
                        out_dir: str | os.PathLike, config: FinetuneConfig = FinetuneConfig(), *,
                        groups: pd.Series | None = None, reuse: bool = False, progress: bool = True) -> FitResult:
    """Fine-tune a gene-token classifier: ``token_labels`` maps token id → class; every occurrence of a labelled
    token in ``cells`` is a training example (other tokens are context only). A ``validation_fraction`` of the
    labelled genes — whole ``groups`` (token id → gene key, e.g. a human gene and its mouse ortholog), stratified
    by label — is held out for early stopping. Cells are cut to ``config.max_genes`` by the caller's
    :class:`CellTokens` or the model's length. ``reuse`` as in :func:`fit_cell_classifier`."""
    start = time.perf_counter()
    token_labels = token_labels.dropna()
    max_genes = _max_genes(checkpoint, config)
    cells = cells.head(max_genes)
    key = _reuse_key(checkpoint, "gene", config, _fingerprint(
        cells, token_labels.index, token_labels, [] if groups is None else groups.reindex(token_labels.index)))
    if reuse and (done := _reuse(out_dir, key)):
        return done
    classes = sorted(set(token_labels.astype(str)))
    classifier = _build(checkpoint, "gene", classes, config, Tokenizer.load(checkpoint).vocab)
    vocab_size = classifier.encoder.config.vocab_size
    tokens = token_labels.index.to_numpy(dtype=np.int64)
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); got {tokens.min()}..{tokens.max()}")
    keys = (groups.reindex(token_labels.index) if groups is not None else pd.Series(tokens, index=tokens)).to_numpy()
    gene_keys, first = np.unique(keys.astype(str), return_index=True)
    gene_class = np.searchsorted(classes, token_labels.astype(str).to_numpy()[first])
    train_genes, val_genes = _split(gene_class, config.validation_fraction, config.seed)
    in_val = np.isin(keys.astype(str), gene_keys[val_genes])
    maps = {split: np.full(vocab_size, IGNORE, dtype=np.int64) for split in ("train", "val")}
    target = np.searchsorted(classes, token_labels.astype(str).to_numpy())
    maps["train"][tokens[~in_val]] = target[~in_val]
    maps["val"][tokens[in_val]] = target[in_val]
    all_ids = np.concatenate(cells.ids) if len(cells) else np.zeros(0, dtype=np.int64)
    cell_of = np.repeat(np.arange(len(cells)), cells.lengths())
    train_index, val_index = (np.unique(cell_of[maps[split][all_ids] != IGNORE]) for split in ("train", "val"))
    if not len(train_index) or not len(val_index):
        raise ValueError("no cell holds a labelled training (or validation) token: check token_labels against "
                         "the cells' token ids")
    occurrences = maps["train"][all_ids]
    weights = _class_weights(occurrences[occurrences != IGNORE], len(classes), config.class_weight)
    history, best = train(classifier, cells, lambda index, ids, split: torch.from_numpy(maps[split])[ids],
                           train_index, val_index, weights, config, progress)
    seconds = time.perf_counter() - start
    directory = save_classifier(classifier.cpu(), out_dir, source=checkpoint, record=_record(
        config, history, best, weights, seconds, key, max_genes=max_genes, n_train_genes=len(train_genes),
        n_validation_genes=len(val_genes), n_train_cells=len(train_index), n_validation_cells=len(val_index)))
    return FitResult(directory, classes, history, best, seconds)


def predict_genes(cells: CellTokens, directory: str | os.PathLike, *, batch_size: int = 64,
                  device: str | None = None) -> pd.DataFrame:
    """Per token id seen in ``cells``: in how many cells it occurs (``n_cells``) and its class probabilities
    averaged over those cells (``probability_<class>``), and the ``prediction`` (most probable class)."""
    classifier, record = load_classifier(directory)
    if classifier.task != "gene":
        raise ValueError(f"{directory} holds a {classifier.task} classifier, not a gene classifier")
    cut = cells.head(record["max_genes"])
    vocab_size, n_classes = classifier.encoder.config.vocab_size, len(classifier.classes)
    sums = torch.zeros(vocab_size, n_classes, dtype=torch.float64)
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    pad = classifier.encoder.config.pad_id
    for _, input_ids, probs in _probabilities(classifier, cut, batch_size, device_of(device)):
        real = input_ids != pad
        sums.index_add_(0, input_ids[real], probs[real].double())
        counts.index_add_(0, input_ids[real], torch.ones(int(real.sum()), dtype=torch.float64))
    seen = np.flatnonzero(counts.numpy() > 0)
    mean = (sums[seen] / counts[seen, None]).numpy()
    table = pd.DataFrame(mean, index=pd.Index(seen, name="token"),
                         columns=[f"probability_{c}" for c in classifier.classes])
    table.insert(0, "n_cells", counts.numpy()[seen].astype(np.int64))
    table["prediction"] = np.asarray(classifier.classes)[mean.argmax(1)]
    return table
