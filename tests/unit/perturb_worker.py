"""Worker for test_perturb.py: the engine on fixed cells, in one process or under torchrun (not a test module).

Under ``torchrun --nproc_per_node 2`` each rank perturbs every other cell and the engine gathers the results; rank 0
writes the tables to ``out`` (a JSON file).
"""
import json
import sys
from pathlib import Path

from test_perturb import VOCAB, mixed_perturbations, random_cells, tiny_model

from gc_lib.model.trainer import close_distributed, init_distributed
from gc_lib.tasks.perturb import perturb
from gc_lib.tasks.perturb_edits import overexpression_values


def main(out: str) -> None:
    runtime = init_distributed()
    model, cells, perturbations = tiny_model(), random_cells(), mixed_perturbations()
    high = overexpression_values(cells.ids, cells.values, VOCAB)
    result = perturb(model, cells, perturbations, high_values=high, batch_size=4, cell_chunk=2, device="cpu",
                     progress=False)
    if runtime.is_main:
        tables = {"world_size": runtime.world_size, "cells": result.cells.to_dict(orient="list"),
                  "genes": result.genes.to_dict(orient="list"), "embeddings": result.embeddings.tolist()}
        Path(out).write_text(json.dumps(tables))
    close_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
