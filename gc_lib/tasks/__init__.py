"""Stage 5 · tasks: what a trained model is used for (DESIGN.md §1, downstream tasks).

- :mod:`~gc_lib.tasks.embedding`    ``gc_lib.embed(adata, checkpoint)``: cell and gene embeddings, scanpy-style
- :mod:`~gc_lib.tasks.cell_tokens`  tokenised cells in memory, batched for inference and fine-tuning
- :mod:`~gc_lib.tasks.finetune`     cell and gene-token classifiers: fit, predict, reuse by content
- :mod:`~gc_lib.tasks.baselines`    the split protocol and the simple baselines every task is compared with
- :mod:`~gc_lib.tasks.dosage`       dosage-sensitivity labels (ClinGen, GO) and scoring for notebook 09
- :mod:`~gc_lib.tasks.dosage_cells` corpus cells streamed shard by shard: token statistics, cells sampled per gene
- :mod:`~gc_lib.tasks.cross_species` train on one species, predict the other; the one-to-one ortholog baseline
- internal: ``_classifier`` (classifier heads and their checkpoint files)

Imports: any earlier stage (:mod:`gc_lib.core` … :mod:`gc_lib.model`).
"""
