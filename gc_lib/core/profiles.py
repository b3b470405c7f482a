"""Run profiles: one name that sizes every notebook (DESIGN.md §2), and the one table of those sizes.

A profile changes sizes and sources, never the code path. Every size that differs between ``ci``, ``local`` and
``full`` lives in :data:`NOTEBOOK_SIZES`, one entry per notebook; a notebook reads its defaults with
``get_profile(PROFILE).sizes("03_pretraining")`` and lets any knob of its ``parameters`` cell (a papermill
parameter) override them.

- ``ci``: the smallest sizes; every notebook in minutes on 2 CPU cores (what ``make test`` runs).
- ``local``: the default of the main job: the whole offline bundle on one CPU machine, under two hours in all.
- ``full``: real atlases (network) and a GPU; multi-GPU through torchrun.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

#: notebook → profile → its sizes. Within a notebook every profile names the same keys (a test checks).
NOTEBOOK_SIZES: dict[str, dict[str, dict]] = {
    "00_data": {
        "ci": {"max_cells_per_dataset": 2_000},
        "local": {"max_cells_per_dataset": None},
        "full": {"max_cells_per_dataset": None},
    },
    "02_prior_knowledge": {  # gene2vec dimension, walks per gene, cells per dataset for co-expression, UMAP genes,
        # TFs held out of every prior entirely (scored in notebook 06)
        "ci": {"dim": 32, "walks": 4, "coexpr_cells": 500, "umap_genes": 1_500, "holdout_tfs": 20},
        "local": {"dim": 128, "walks": 10, "coexpr_cells": 5_000, "umap_genes": 6_000, "holdout_tfs": 40},
        "full": {"dim": 256, "walks": 10, "coexpr_cells": 20_000, "umap_genes": 10_000, "holdout_tfs": 100},
    },
    "03_pretraining": {  # model preset (+ overrides), steps of the main run and of each ablation, batch, genes
        "ci": {"preset": "tiny", "model_overrides": {"d_model": 64, "d_ff": 256}, "steps": 40, "ablation_steps": 40,
               "batch_size": 8, "max_genes": 128, "learning_rate": 2e-3, "umap_cells": 300},
        "local": {"preset": "tiny", "model_overrides": {}, "steps": 1_000, "ablation_steps": 150,
                  "batch_size": 16, "max_genes": 512, "learning_rate": 1e-3, "umap_cells": None},
        "full": {"preset": "base", "model_overrides": {}, "steps": 100_000, "ablation_steps": 5_000,
                 "batch_size": 32, "max_genes": 2047, "learning_rate": 1e-4, "umap_cells": None},
    },
    "04_scaling_curves": {  # nested corpus fractions, model sizes (overrides of the tiny preset), training length:
        # every run trains `epochs` passes over its own fraction, steps = ceil(epochs × cells / batch) ≤ max_steps
        "ci": {"fractions": [0.03, 0.1, 0.3], "epochs": 1, "max_steps": 200, "batch_size": 8, "max_genes": 128,
               "learning_rate": 2e-3,
               "model_sizes": [{"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 128},
                               {"n_layers": 2, "d_model": 64, "n_heads": 2, "d_ff": 256}]},
        "local": {"fractions": [0.05, 0.2, 1.0], "epochs": 1, "max_steps": 1_000, "batch_size": 16,
                  "max_genes": 256, "learning_rate": 1e-3,
                  "model_sizes": [{"n_layers": 1, "d_model": 64, "n_heads": 2, "d_ff": 256},
                                  {"n_layers": 2, "d_model": 128, "n_heads": 2, "d_ff": 512}]},
        "full": {"fractions": [0.01, 0.1, 1.0], "epochs": 1, "max_steps": 200_000, "batch_size": 32,
                 "max_genes": 2047, "learning_rate": 2e-4,
                 "model_sizes": [{"n_layers": 4, "d_model": 256, "n_heads": 4, "d_ff": 1024},
                                 {"n_layers": 6, "d_model": 512, "n_heads": 8, "d_ff": 2048},
                                 {"n_layers": 12, "d_model": 768, "n_heads": 12, "d_ff": 3072}]},
    },
    "05_cell_type_annotation": {  # fine-tuning length and input; Baron cells, seeds, epochs, genes; Census tissue.
        # local runs 3 Baron seeds (24 fits), not 5, to keep the main job within two hours on 2 cores
        "ci": {"epochs": 3, "max_genes": 64, "batch_size": 16, "baron_max_cells": 300, "baron_seeds": 2,
               "baron_epochs": 2, "baron_max_genes": 64, "cross_species_tissue": None},
        "local": {"epochs": 8, "max_genes": 256, "batch_size": 16, "baron_max_cells": 600, "baron_seeds": 3,
                  "baron_epochs": 4, "baron_max_genes": 128, "cross_species_tissue": None},
        "full": {"epochs": 10, "max_genes": 2047, "batch_size": 32, "baron_max_cells": None, "baron_seeds": 5,
                 "baron_epochs": 10, "baron_max_genes": None, "cross_species_tissue": "lung"},
    },
    "06_grn_inference": {  # human corpus cells, tokens per cell (the pretraining length of notebook 03), cells a gene
        # must be in, target genes scored, GRNBoost2's trees, TFs deleted in silico, the cells each needs, random
        # matched genes per expression bin for the deletion's null
        "ci": {"n_cells": 300, "max_genes": 128, "min_cells": 5, "max_targets": 300, "grnboost_trees": 500,
               "deletion_tfs": 16, "deletion_min_cells": 5, "deletion_null": 10},
        "local": {"n_cells": 1_000, "max_genes": 512, "min_cells": 10, "max_targets": 1_500, "grnboost_trees": 5_000,
                  "deletion_tfs": 60, "deletion_min_cells": 10, "deletion_null": 20},
        "full": {"n_cells": 5_000, "max_genes": 2047, "min_cells": 50, "max_targets": 5_000, "grnboost_trees": 5_000,
                 "deletion_tfs": 200, "deletion_min_cells": 20, "deletion_null": 50},
    },
    "07_gene_perturbation": {  # the simulated network's genes, its single and double knock-outs, cells per
        # condition and control cells; GEARS simulation-split seeds; GEARS's epochs and width; the linear model's k
        "ci": {"sim_genes": 100, "sim_singles": 10, "sim_doubles": 12, "sim_cells": 40, "sim_control": 200,
               "split_seeds": [1, 2, 3], "gears_epochs": 1, "gears_hidden": 16, "linear_k": 10},
        "local": {"sim_genes": 200, "sim_singles": 30, "sim_doubles": 30, "sim_cells": 60, "sim_control": 300,
                  "split_seeds": [1, 2, 3], "gears_epochs": 5, "gears_hidden": 64, "linear_k": 10},
        "full": {"sim_genes": 300, "sim_singles": 40, "sim_doubles": 40, "sim_cells": 100, "sim_control": 500,
                 "split_seeds": [1, 2, 3, 4, 5], "gears_epochs": 20, "gears_hidden": 64, "linear_k": 10},
    },
    "08_drug_response": {  # training seeds of every model, epochs of the CPA-style and the DeepCE-style model. The
        # local epochs were chosen on a validation part, never on a reported split: the plate without its highest
        # doses, holding out each compound's next-highest dose (3.33 µM), 2 seeds, 30/60/100/150 epochs: R² on the
        # top-20 DE genes rose to 150 for the CPA-style model and was best at 100 for the DeepCE-style model
        "ci": {"seeds": 2, "cpa_epochs": 20, "deepce_epochs": 20},
        "local": {"seeds": 5, "cpa_epochs": 150, "deepce_epochs": 100},
        "full": {"seeds": 5, "cpa_epochs": 150, "deepce_epochs": 100},
    },
    "09_dosage_sensitivity": {  # gene filter, cells sampled per gene, fine-tuning epochs
        "ci": {"min_cells": 5, "cells_per_gene": 8, "epochs": 2},
        "local": {"min_cells": 10, "cells_per_gene": 10, "epochs": 3},
        "full": {"min_cells": 10, "cells_per_gene": 200, "epochs": 10},
    },
    "10_esc_gonadal_screen": {  # start cells screened per overexpression case and per deletion case (a deletion
        # applies only to the cells holding the TF in their window, so it needs more of them and costs less),
        # reference cells per goal / alternative state, the window (top genes per cell; local 256 for CPU time, half
        # the pretraining length), random matched genes per expression bin for the null, bins, start cells a deleted
        # TF must be in, the cell-subsample check's sizes and repeats, and whether the layer and no-priors checks run
        "ci": {"start_cells": 4, "delete_start_cells": 20, "reference_cells": 40, "max_genes": 64, "n_null": 5,
               "n_bins": 3, "min_cells": 1, "subsample_sizes": [2], "subsample_repeats": 5, "checks": True},
        "local": {"start_cells": 16, "delete_start_cells": 200, "reference_cells": 200, "max_genes": 256,
                  "n_null": 20, "n_bins": 5, "min_cells": 3, "subsample_sizes": [4, 8], "subsample_repeats": 20,
                  "checks": True},
        "full": {"start_cells": 200, "delete_start_cells": 1_000, "reference_cells": 1_000, "max_genes": 2047,
                 "n_null": 100, "n_bins": 10, "min_cells": 10, "subsample_sizes": [25, 50, 100],
                 "subsample_repeats": 20, "checks": True},
    },
}


@dataclass(frozen=True)
class Profile:
    name: str
    use_atlases: bool  # fetch real atlases over the network (CELLxGENE Census, GEO)

    def sizes(self, notebook: str) -> dict:
        """This profile's sizes for ``notebook`` (a copy: a notebook may change it freely)."""
        if notebook not in NOTEBOOK_SIZES:
            raise ValueError(f"no sizes for notebook {notebook!r}; known: {sorted(NOTEBOOK_SIZES)}")
        return copy.deepcopy(NOTEBOOK_SIZES[notebook][self.name])


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", use_atlases=False),
    "local": Profile("local", use_atlases=False),
    "full": Profile("full", use_atlases=True),
}


def get_profile(name: str) -> Profile:
    """The :class:`Profile` called ``name``; a clear error for an unknown name."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
