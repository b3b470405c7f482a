"""Worker for test_train.py: a few optimizer steps on fixed micro-batches, in one process or under torchrun.

Not a test module (pytest does not collect it). One process takes every micro-batch of a global batch with
gradient accumulation; under ``torchrun --nproc_per_node 2`` rank r takes micro-batch r. The losses and a
checksum of the final weights go to the JSON file named on the command line (rank 0 writes it).
"""
import json
import sys
from pathlib import Path

import torch

from gc_lib.model.architecture import ModelConfig, build_model
from gc_lib.model.trainer import TrainConfig, Trainer, close_distributed, init_distributed

V, L, STEPS = 50, 10, 4


def micro_batch(step: int, part: int) -> dict:
    g = torch.Generator().manual_seed(1000 * step + part)
    cells = 3 + part                      # unequal micro-batches: the loss weighting must still be exact
    ids = torch.randint(4, V, (cells, L), generator=g)
    values = torch.rand(cells, L, generator=g)
    attention = torch.ones(cells, L, dtype=torch.bool)
    attention[0, 6:] = False
    masked = (torch.rand(cells, L, generator=g) < 0.4) & attention
    masked[:, 0] = True
    return {"input_ids": ids * attention, "values": values * attention, "species": torch.arange(cells) % 2,
            "attention_mask": attention, "masked": masked, "labels": torch.where(masked, ids, -100),
            "value_labels": values}


def main(out: str) -> None:
    runtime = init_distributed()
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny", V, d_model=32, n_heads=2, d_ff=64, max_len=32, dropout=0.0))
    trainer = Trainer(model, TrainConfig(max_steps=STEPS, warmup_steps=1, learning_rate=1e-2, clip_norm=0.5),
                      runtime)
    losses = []
    for step in range(STEPS):
        parts = [0, 1] if runtime.world_size == 1 else [runtime.rank]
        losses.append(trainer.step([micro_batch(step, p) for p in parts])["loss"])
    checksum = float(sum(p.double().abs().sum() for p in trainer.module.parameters()))
    if runtime.is_main:
        Path(out).write_text(json.dumps({"losses": losses, "checksum": checksum, "world_size": runtime.world_size}))
    close_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
