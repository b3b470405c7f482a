"""The training loop of fine-tuning (:mod:`gc_lib.tasks.finetune`): head preparation, optimiser, epochs, early stop.

Before the first step the head is **prepared** on the training examples' features, read from the pretrained
encoder in eval mode (:func:`prepare_head`): its input is standardised with their mean and standard deviation, and
a linear head starts as the multinomial logistic regression fitted on them — the linear probe. Training then moves
head and encoder together from there ("LP-FT", Kumar et al., ICLR 2022: fine-tuning from a random head distorts
pretrained features; from the probe it keeps them). The encoder runs in eval mode (no dropout) unless
``encoder_dropout``. The prepared, untrained model is scored as **epoch 0** and competes in early stopping with the
trained epochs, so on the validation split a fit is never worse than its probe start.

Why — measured on pbmc68k_reduced with the local model (selection sets carved from notebook 05's training cells,
macro-F1, seeds 0–2; see ``FinetuneConfig``):

- the encoder's cell states share one large vector and differ between cells by ~6 % of their norm (per-feature
  sd ~0.05; the ci model's cell token by ~1e-6): a logistic regression scores 0.20 on standardised states and
  0.09 on raw ones, and the old head (hidden layer on raw states, head LR 1e-3, ~200 steps) barely left chance;
- in train mode the encoder's dropout moves the cell token by 5× its between-cell spread, so the old fits trained
  on noise (0.08 on the selection sets, 2–4 classes ever predicted);
- early stopping on a ~74-cell validation loss with patience 3 then restored epoch 1; from the probe start every
  fit first gets worse for 2–6 epochs and recovers (mean pooling: 0.41 at epoch 0, 0.52 at epoch 8), so the
  default is to train every epoch and keep the best validation loss (0.44); keeping the last epoch would score
  higher there but wrecks the ci model, whose features any encoder step destroys (probe 0.32, later epochs 0.02).
"""
from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..model.trainer import TrainConfig, learning_rate
from . import _trained_rows
from ._classifier import Classifier
from .cell_tokens import CellTokens, collate, length_batches

IGNORE = -100          # target of positions that carry no label (cross-entropy skips them)
PROBE_EXAMPLES = 20_000  # at most this many training examples (cells or labelled tokens) prepare the head
FROZEN_STATES_BYTES = 2 * 1024 ** 3  # precompute a frozen encoder part's output only when it fits in this (CPU RAM)


def device_of(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def class_weights(targets: np.ndarray, n_classes: int, mode: str | None) -> torch.Tensor:
    """Cross-entropy class weights: ``"balanced"`` weighs class c by n / (n_classes × n_c); None: all 1."""
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    if mode is None:
        return torch.ones(n_classes)
    if (counts == 0).any():
        raise ValueError(f"class counts {counts.astype(int).tolist()}: every class needs training examples")
    return torch.tensor(counts.sum() / (n_classes * counts), dtype=torch.float32)


class FrozenStates:
    """The frozen part's output (:meth:`Classifier.frozen_states`) for some cells, computed once in eval mode and
    kept on the CPU, one (length + 1, d_model) tensor per cell: fine-tuning with a frozen input embedding (and
    frozen lower blocks) then runs only the trainable blocks. Exact — the frozen part is deterministic in eval mode
    — so it changes speed, not results."""

    def __init__(self, classifier: Classifier, cells: CellTokens, index: np.ndarray, batch_size: int,
                 device: torch.device):
        classifier.to(device).eval()
        self.states: dict[int, torch.Tensor] = {}
        lengths = cells.lengths()
        for batch in length_batches(lengths[index], batch_size):
            rows = index[batch]
            states = classifier.frozen_states(**batch_inputs(classifier, cells, rows, device, None)).float().cpu()
            for row, cell in enumerate(rows):
                self.states[int(cell)] = states[row, : lengths[cell] + 1].clone()

    @staticmethod
    def fits(classifier: Classifier, cells: CellTokens, index: np.ndarray) -> bool:
        """Whether the states of the cells at ``index`` stay within :data:`FROZEN_STATES_BYTES` (float32)."""
        tokens = int((cells.lengths()[index] + 1).sum())
        return tokens * classifier.encoder.config.d_model * 4 <= FROZEN_STATES_BYTES

    def batch(self, index, length: int, device: torch.device) -> torch.Tensor:
        """The states of the cells at ``index``, zero-padded to ``1 + length`` positions: (B, 1 + length, d)."""
        first = self.states[int(index[0])]
        out = first.new_zeros(len(index), length + 1, first.shape[-1])
        for row, cell in enumerate(index):
            state = self.states[int(cell)]
            out[row, : len(state)] = state
        return out.to(device)


def batch_inputs(classifier: Classifier, cells: CellTokens, index, device: torch.device,
                 frozen: FrozenStates | None) -> dict[str, torch.Tensor]:
    """The classifier's keyword inputs for the cells at ``index`` on ``device``: the padded tokens, and the
    precomputed frozen states when there are any."""
    inputs = {k: v.to(device) for k, v in collate(cells, index, pad_id=classifier.encoder.config.pad_id).items()}
    if frozen is not None:
        inputs["states"] = frozen.batch(index, inputs["input_ids"].shape[1], device)
    return inputs


@torch.no_grad()
def training_features(classifier: Classifier, cells: CellTokens, targets, index: np.ndarray, batch_size: int,
                      device: torch.device, seed: int, frozen: FrozenStates | None = None
                      ) -> tuple[torch.Tensor, np.ndarray]:
    """The features the head reads (encoder in eval mode) and the class of every labelled training example of
    the cells at ``index`` — at most :data:`PROBE_EXAMPLES` of them, drawn at random (``seed``)."""
    classifier.to(device).eval()
    features, labels = [], []
    for batch in length_batches(cells.lengths()[index], batch_size):
        inputs = batch_inputs(classifier, cells, index[batch], device, frozen)
        target = targets(index[batch], inputs["input_ids"].cpu(), "train")
        labelled = target != IGNORE
        features.append(classifier.features(**inputs).float().cpu()[labelled])
        labels.append(target[labelled].numpy())
    features, labels = torch.cat(features), np.concatenate(labels)
    if len(labels) > PROBE_EXAMPLES:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), PROBE_EXAMPLES, replace=False))
        features, labels = features[keep], labels[keep]
    return features, labels


def prepare_head(classifier: Classifier, features: torch.Tensor, labels: np.ndarray, *, standardise: bool,
                 probe_init: bool, class_weight: str | None, seed: int) -> None:
    """Standardise the head's input on ``features`` and, with ``probe_init`` (a linear head only), set its weights
    to a multinomial logistic regression (L2, C=1, as the frozen-embedding baseline; balanced class weights when
    ``class_weight`` is) fitted on the standardised features. A class without examples gets a very low bias; with
    examples of one class only there is nothing to fit, and the head keeps its random start."""
    from sklearn.linear_model import LogisticRegression

    head = classifier.head
    if standardise:
        head.standardise(features)
    if not probe_init or len(np.unique(labels)) < 2:
        return
    if head.hidden:
        raise ValueError("probe_init needs a linear head (head='linear')")
    x = ((features - head.shift) / head.scale).numpy()
    probe = LogisticRegression(max_iter=1_000, class_weight="balanced" if class_weight else None, random_state=seed)
    probe.fit(x, labels)
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:        # scikit-learn's binary model: one logit z; softmax of (-z/2, z/2) is the same
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.fill_(float(intercept.min()) - 20.0)
        rows = torch.from_numpy(probe.classes_.astype(np.int64))
        head.linear.weight[rows] = torch.as_tensor(coef, dtype=head.linear.weight.dtype)
        head.linear.bias[rows] = torch.as_tensor(intercept, dtype=head.linear.bias.dtype)


def optimizer_of(classifier: Classifier, config) -> torch.optim.AdamW:
    """AdamW (its fused kernel) over the trainable parameters; encoder and head each get their peak learning rate
    (group key ``peak``), weight decay on weight matrices only."""
    groups = []
    for module, lr in ((classifier.encoder, config.learning_rate), (classifier.head, config.head_learning_rate)):
        params = [p for p in module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        groups += [{"params": decay, "weight_decay": config.weight_decay, "peak": lr},
                   {"params": rest, "weight_decay": 0.0, "peak": lr}]
    fused = device_of(config.device).type in ("cpu", "cuda")   # one pass per step: benchmarks/finetune_optimizer.py
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.learning_rate, betas=(0.9, 0.98),
                             fused=fused)


def train(classifier: Classifier, cells: CellTokens, targets, train_index, val_index, weights: torch.Tensor,
          config, progress: bool) -> tuple[pd.DataFrame, int]:
    """Prepare the head (:func:`prepare_head`, as ``config`` says), then epochs of training with early stopping on
    the validation loss; ``targets(batch_index, input_ids, split)`` gives the batch targets (CPU tensors). Epoch 0
    is the prepared, untrained model. The best epoch's weights are loaded back
    into ``classifier``. With ``head_only`` the frozen encoder stays in eval mode (no dropout), so the head trains
    on the features it will be applied to."""
    from tqdm.auto import tqdm

    device = device_of(config.device)
    frozen = None
    needed = np.union1d(train_index, val_index)
    if (config.cache_frozen and classifier.frozen_blocks is not None
            and (config.head_only or not config.encoder_dropout) and FrozenStates.fits(classifier, cells, needed)):
        frozen = FrozenStates(classifier, cells, needed, config.batch_size * 2, device)
    if config.standardise or config.probe_init:
        features, labels = training_features(classifier, cells, targets, train_index, config.batch_size * 2, device,
                                             config.seed, frozen)
        prepare_head(classifier, features, labels, standardise=config.standardise, probe_init=config.probe_init,
                     class_weight=config.class_weight, seed=config.seed)
    classifier.to(device)
    weights = weights.to(device)
    encoder_config = classifier.encoder.config
    trained_rows = _trained_rows.attach(classifier.encoder, _trained_rows.reachable_rows(
        [cells.ids[i] for i in train_index], cells.species[train_index], encoder_config.first_species_id,
        encoder_config.pad_id))
    optimizer = optimizer_of(classifier, config)
    rows_group = trained_rows.group_in(optimizer) if trained_rows is not None else None
    lengths = cells.lengths()
    n_batches = len(length_batches(lengths[train_index], config.batch_size))
    total = max(1, config.epochs * n_batches)
    schedule = TrainConfig(max_steps=total, learning_rate=1.0, warmup_steps=max(1, int(config.warmup_fraction * total)),
                           min_lr_ratio=0.1)
    use_bf16 = device.type == "cuda" and config.bf16

    def loss_of(index, split: str) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        batch = batch_inputs(classifier, cells, index, device, frozen)
        target = targets(index, batch["input_ids"].cpu(), split).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext():
            logits = classifier(**batch).float()
        labelled = target != IGNORE
        loss = F.cross_entropy(logits[labelled], target[labelled], weight=weights, reduction="sum")
        return loss, int(labelled.sum()), logits[labelled].detach(), target[labelled]

    history, best_loss, best_state, best_epoch, step, waited = [], float("inf"), None, 0, 0, 0
    for epoch in range(config.epochs + 1):
        train_sum, train_n = 0.0, 0
        if epoch:
            classifier.train()
            if config.head_only or not config.encoder_dropout:
                classifier.encoder.eval()
            batches = length_batches(lengths[train_index], config.batch_size, shuffle=True, seed=config.seed + epoch)
            for batch in tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False):
                for group in optimizer.param_groups:
                    group["lr"] = group["peak"] * learning_rate(step, schedule)
                loss, n, _, _ = loss_of(train_index[batch], "train")
                if n:
                    (loss / n).backward()
                    torch.nn.utils.clip_grad_norm_(classifier.parameters(), 1.0)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if rows_group is not None:
                        trained_rows.decay_fixed_rows(rows_group["lr"], rows_group["weight_decay"])
                    train_sum, train_n = train_sum + float(loss.detach()), train_n + n
                step += 1
        row = {"epoch": epoch, "train_loss": train_sum / train_n if train_n else float("nan"),
               **validate(classifier, loss_of, lengths, val_index, config.batch_size)}
        history.append(row)
        if row["val_loss"] < best_loss:
            best_loss, best_epoch, waited = row["val_loss"], epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in classifier.state_dict().items()})
        elif epoch:
            waited += 1
            if config.patience is not None and waited >= config.patience:
                break
    if best_state is not None:
        classifier.load_state_dict(best_state)
    _trained_rows.detach(classifier.encoder)
    return pd.DataFrame(history), best_epoch


@torch.no_grad()
def validate(classifier: Classifier, loss_of, lengths, val_index, batch_size: int) -> dict[str, float]:
    """Mean (class-weighted) loss, accuracy and balanced accuracy (mean recall over the classes present) over the
    validation examples, in eval mode."""
    classifier.eval()
    total, n, predicted, truth = 0.0, 0, [], []
    for batch in length_batches(lengths[val_index], batch_size * 2):
        loss, count, logits, target = loss_of(val_index[batch], "val")
        total, n = total + float(loss), n + count
        predicted.append(logits.argmax(-1).cpu())
        truth.append(target.cpu())
    predicted, truth = torch.cat(predicted).numpy(), torch.cat(truth).numpy()
    hits = predicted == truth
    recall = [hits[truth == c].mean() for c in np.unique(truth)]
    return {"val_loss": total / max(n, 1), "val_accuracy": float(hits.mean()) if n else 0.0,
            "val_balanced_accuracy": float(np.mean(recall)) if n else 0.0, "val_examples": n}
