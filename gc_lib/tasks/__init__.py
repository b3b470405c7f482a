"""Stage 5 · tasks: what a trained model is used for (DESIGN.md §1, downstream tasks).

- :mod:`~gc_lib.tasks.embedding`    ``gc_lib.embed(adata, checkpoint)``: cell and gene embeddings, scanpy-style
- :mod:`~gc_lib.tasks.cell_tokens`  tokenised cells in memory, batched for inference and fine-tuning
- :mod:`~gc_lib.tasks.finetune`     cell and gene-token classifiers: fit, predict, reuse by content
- :mod:`~gc_lib.tasks.fit_pool`     independent fine-tuning runs side by side in worker processes
- :mod:`~gc_lib.tasks.baselines`    the split protocol and the simple baselines every task is compared with
- :mod:`~gc_lib.tasks.perturb`      the in-silico perturbation engine: batched token edits, shifts of cells and genes,
  shift toward a goal state; :mod:`~gc_lib.tasks.perturb_edits` (the edits), :mod:`~gc_lib.tasks.perturb_stats`
  (matched-expression null, FDR), :mod:`~gc_lib.tasks.perturb_adata` (``gc_lib.perturb(adata, …)``)
- :mod:`~gc_lib.tasks.gene_embeddings` gene embeddings by layer (contextual, by gene identity) and input vectors
- :mod:`~gc_lib.tasks.deletion`     in-silico deletion as scored TF→target edges
- :mod:`~gc_lib.tasks.grn_widgets`  the TF explorer of notebook 06 (table, star network, ipywidgets)
- :mod:`~gc_lib.tasks.grn`          TF→target edge scores: cosine of gene vectors, co-expression, GRNBoost2, random
- :mod:`~gc_lib.tasks.grn_eval`     GRN scoring: candidate pairs minus the prior's edges, TF-wise validation/test split,
  AUPRC / AUROC / early precision (BEELINE) pooled and per TF
- :mod:`~gc_lib.tasks.dosage`       dosage-sensitivity labels (ClinGen, GO) and scoring for notebook 09
- :mod:`~gc_lib.tasks.dosage_cells` corpus cells streamed shard by shard: token statistics, cells sampled per gene
- :mod:`~gc_lib.tasks.cross_species` annotation within and across species: every method on one split, the
  one-to-one ortholog baselines (logistic regression, kNN in a PCA of the training cells)
- :mod:`~gc_lib.tasks.species_splits` donor / stratified / cross-species splits, the rare-class rule
- :mod:`~gc_lib.tasks.species_scores` shared-class scoring, per-class F1 with class sizes, prior-token shares
- :mod:`~gc_lib.tasks.dose_response` a CPA-style dose-response model (basal latent, drug × dose curve, adversary,
  Gaussian or negative-binomial decoder (:mod:`~gc_lib.tasks.dose_likelihoods`), gene embeddings through a trained
  output path) for notebook 08
- :mod:`~gc_lib.tasks.deepce`       a DeepCE-style model: gene features attend to drug features (learned, or
  fingerprints of SMILES from :mod:`~gc_lib.tasks.drug_features`), with dose and cell line
- :mod:`~gc_lib.tasks.gene_vectors` fixed gene vectors per source (GeneCompass, each prior, random, none)
- :mod:`~gc_lib.tasks.seed_summary` mean ± SD over seeds, winners per metric, paired differences between variants
- :mod:`~gc_lib.tasks.perturbseq_data` GEARS-format conditions, pseudobulk means, GEARS's simulation split;
  :mod:`~gc_lib.tasks.perturbseq_linear` (no change, training mean, additive, the linear model Y ≈ G K Pᵀ + b),
  :mod:`~gc_lib.tasks.perturbseq_metrics` (Pearson of the change, top-20 DE, MSE, L2),
  :mod:`~gc_lib.tasks.perturbseq_benchmark` (every method on one split, notebook 07)
- :mod:`~gc_lib.tasks.gears_adapter` GEARS run offline on our inputs (published / embeddings as initial weights /
  embedding similarity graph); :mod:`~gc_lib.tasks.gears_inputs` (GO graph from org.Hs.eg.db, GEARS's files)
- :mod:`~gc_lib.tasks.dose_splits`  conditions, held-out dose and drug splits, the drug-response baselines;
  :mod:`~gc_lib.tasks.dose_metrics` (R², top-20 DE, Pearson of the change, precision@k);
  :mod:`~gc_lib.tasks.dose_benchmark` (every method on one split, over seeds, fits side by side)
- internal: ``_classifier`` (classifier heads and their checkpoint files), ``_finetune_loop`` (the training loop),
  ``_perturb_loop`` (the per-cell perturbation loop in the published style: the engine's reference and benchmark)

Imports: any earlier stage (:mod:`gc_lib.core` … :mod:`gc_lib.model`).
"""
