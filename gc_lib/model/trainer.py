"""Pretraining: one visible loop, from one CPU process to many GPUs under ``torchrun`` (DESIGN.md §5).

    python -m gc_lib.model.pretrain --corpus data/01_corpus/corpus --priors data/02_prior_knowledge/priors \\
        --out data/03_pretraining/run --preset small --max-steps 2000            # one process
    torchrun --nproc_per_node 8 -m gc_lib.model.pretrain ... --strategy ddp            # 8 GPUs (or CPU processes: gloo)

What one optimizer step does (:meth:`Trainer.step`): take ``grad_accum`` micro-batches, count their masked tokens
across all ranks, and back-propagate each micro-batch's loss scaled so the accumulated gradient is the gradient of
the mean loss over *every* masked token of the global batch — identical, up to float rounding, whether the batch
is split over ranks, over accumulation steps, or neither (the two-process test checks this). Then clip, AdamW,
and the warm-up + cosine learning rate. bf16 autocast on GPU; optional ``torch.compile``; DDP, or FSDP (PyTorch's
``fully_shard``) for models too large to replicate.
"""
from __future__ import annotations

import json
import math
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .architecture import GeneCompass

BATCH_KEYS = ("input_ids", "values", "species", "attention_mask", "masked", "labels", "value_labels")
MEAN_KEYS = ("loss", "id_loss", "value_loss", "id_accuracy")   # per-masked-token means reported by step/evaluate


def reported_keys(model: GeneCompass) -> tuple[str, ...]:
    """The means a step and an evaluation report: :data:`MEAN_KEYS`, plus ``gepc_loss`` when the model has the GEPC
    term (the same on every rank, so the all-reduced tensors line up)."""
    return MEAN_KEYS + (("gepc_loss",) if model.gepc_head is not None else ())


@dataclass
class TrainConfig:
    max_steps: int = 1_000            # optimizer steps
    batch_size: int = 16              # cells per micro-batch per rank
    grad_accum: int = 1               # micro-batches per optimizer step
    max_genes: int = 2_047            # gene tokens per cell (the cell token makes 2,048)
    learning_rate: float = 1e-4       # peak learning rate
    min_lr_ratio: float = 0.1         # the cosine decays to this fraction of the peak
    warmup_steps: int = 100           # linear warm-up from 0
    weight_decay: float = 0.01        # AdamW, on weight matrices only (not biases, norms, embeddings of priors)
    betas: tuple[float, float] = (0.9, 0.98)
    clip_norm: float = 1.0            # gradient clipping (0: off)
    eval_every: int = 100             # steps between held-out evaluations (0: only at the end)
    eval_batches: int = 20            # held-out micro-batches per evaluation
    log_every: int = 10               # steps between train-loss log rows
    save_every: int = 500             # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 2         # step checkpoints kept (older ones are deleted)
    eval_fraction: float = 0.02       # cells held out of training, by a hash of (dataset, row)
    train_fraction: float = 1.0       # share of the training cells used (nested subsets, for scaling curves)
    num_workers: int = 0              # DataLoader worker processes per rank
    bf16: bool = True                 # bf16 autocast when on GPU (ignored on CPU)
    compile: bool = False             # torch.compile the model
    strategy: str = "ddp"             # "ddp" or "fsdp" when world size > 1
    seed: int = 0                     # model init, data order, masking, dropout

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "TrainConfig":
        """The inverse of :meth:`to_dict` after a JSON round trip (``betas`` comes back as a tuple)."""
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown} (written by a newer gc_lib?)")
        fields = dict(fields)
        if "betas" in fields:
            fields["betas"] = tuple(fields["betas"])
        return cls(**fields)

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike) -> "TrainConfig":
        """The training config a pretraining checkpoint was saved with (``trainer_state.json``'s ``train_config``).

        ``directory``: a checkpoint (``run/checkpoint``, ``run/checkpoints/step-*``) or a run directory, whose
        ``run.json`` records the config the run was started with (``max_steps`` as it was then)."""
        directory = Path(directory)
        for name in ("trainer_state.json", "run.json"):
            if (directory / name).exists():
                record = json.loads((directory / name).read_text())
                if "train_config" not in record:
                    raise ValueError(f"{directory / name} records no train_config")
                return cls.from_dict(record["train_config"])
        raise FileNotFoundError(f"{directory} holds neither trainer_state.json (a pretraining checkpoint) nor "
                                f"run.json (a pretraining run directory)")


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to the peak over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` × peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.learning_rate * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank, the world size, its device."""
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Runtime:
    """The runtime of this process: a process group when launched by ``torchrun`` (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(dist.get_rank() if dist.is_initialized() else 0, world_size, device)


def close_distributed() -> None:
    """End this process's group, if any: every rank meets at a barrier first, so none tears down its gloo/NCCL
    threads while a peer still has work in flight (a rank that exits early can make the other abort at exit)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 and "genes.ids" not in name else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Owns the (wrapped) model, the optimizer and the step counter; :meth:`step` is one optimizer step."""

    def __init__(self, model: GeneCompass, config: TrainConfig, runtime: Runtime = Runtime()):
        self.config, self.runtime, self.step_count = config, runtime, 0
        self.model = model.to(runtime.device)
        self.module = model                      # the unwrapped model (for saving, evaluation, embedding)
        self.wrapped = self._wrap(model)
        self.optimizer = torch.optim.AdamW(_decay_groups(model, config.weight_decay), lr=config.learning_rate,
                                           betas=config.betas, fused=runtime.device.type in ("cpu", "cuda"))

    def _wrap(self, model: GeneCompass) -> torch.nn.Module:
        wrapped: torch.nn.Module = model
        if self.runtime.world_size > 1:
            if self.config.strategy == "fsdp":
                from torch.distributed.fsdp import fully_shard

                for block in model.blocks:
                    fully_shard(block)
                wrapped = fully_shard(model)
            elif self.config.strategy == "ddp":
                ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
                wrapped = DistributedDataParallel(model, device_ids=ids)
            else:
                raise ValueError(f"strategy must be 'ddp' or 'fsdp'; got {self.config.strategy!r}")
        return torch.compile(wrapped) if self.config.compile else wrapped

    def autocast(self):
        if self.runtime.device.type == "cuda" and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _to_device(self, batch: dict) -> dict:
        return {k: batch[k].to(self.runtime.device, non_blocking=True) for k in BATCH_KEYS}

    def _global_count(self, micro_batches: list[dict]) -> torch.Tensor:
        count = torch.tensor(float(sum(int(b["masked"].sum()) for b in micro_batches)), device=self.runtime.device)
        if self.runtime.world_size > 1:
            dist.all_reduce(count)
        return count

    def step(self, micro_batches: list[dict]) -> dict[str, float]:
        """One optimizer step over ``micro_batches`` (this rank's share of the global batch)."""
        lr = learning_rate(self.step_count, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.wrapped.train()
        total = self._global_count(micro_batches)
        sums = dict.fromkeys(reported_keys(self.module), 0.0)
        for i, batch in enumerate(micro_batches):
            batch = self._to_device(batch)
            last = i == len(micro_batches) - 1
            sync = self.wrapped.no_sync() if isinstance(self.wrapped, DistributedDataParallel) and not last \
                else nullcontext()
            with sync, self.autocast():
                out = self.wrapped(**batch)
            share = out["n_masked"].float() / total           # this micro-batch's share of all masked tokens
            # DDP/FSDP average gradients over ranks; multiplying by world_size turns that average into a sum
            (out["loss"] * share * self.runtime.world_size).backward()
            for key in sums:
                sums[key] += float(out[key].detach() * share)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        totals = torch.tensor(list(sums.values()), device=self.runtime.device)
        if self.runtime.world_size > 1:
            dist.all_reduce(totals)                           # per-rank shares add up to the global means
        return {**dict(zip(sums, totals.tolist())), "lr": lr, "grad_norm": float(grad_norm),
                "masked_tokens": int(total)}

    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        """Token-weighted mean losses over ``batches`` (held-out, fixed masks), summed over ranks."""
        self.module.eval()
        keys = reported_keys(self.module)
        sums = torch.zeros(len(keys) + 1, device=self.runtime.device)   # the weighted sums, then the token count
        for batch in batches:
            batch = self._to_device(batch)
            with self.autocast():
                out = self.module(**batch)
            n = out["n_masked"].float()
            sums += torch.stack([*(out[k].float() * n for k in keys), n])
        if self.runtime.world_size > 1:
            dist.all_reduce(sums)
        n = max(float(sums[-1]), 1.0)
        return {**{k: float(v) / n for k, v in zip(keys, sums[:-1])}, "masked_tokens": int(sums[-1])}

    def _fsdp(self) -> bool:
        return self.runtime.world_size > 1 and self.config.strategy == "fsdp"

    def full_state(self) -> dict[str, torch.Tensor] | None:
        """The whole model state on CPU (gathered from FSDP shards; collective, call on every rank)."""
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return None

    def optimizer_state(self) -> dict:
        """The optimizer's full state (gathered from FSDP shards, keyed by parameter name; collective)."""
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(self.model, self.optimizer,
                                            options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.optimizer.state_dict()

    def load_model_state(self, weights: dict[str, torch.Tensor]) -> None:
        """Load full model weights (scattered to FSDP shards when sharded)."""
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True))
            return
        self.module.load_state_dict(weights)

    def load_optimizer_state(self, state: dict) -> None:
        """Load a full optimizer state (scattered to FSDP shards when sharded)."""
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.model, self.optimizer, state, options=StateDictOptions(full_state_dict=True))
            return
        device = self.runtime.device
        state["state"] = {k: {n: v if n == "step" else v.to(device) for n, v in per.items()}
                          for k, per in state["state"].items()}
        self.optimizer.load_state_dict(state)
