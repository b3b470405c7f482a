"""Cell-type annotation across species (notebook 05): train on one species' cells, predict the other's — either way.

The paper fine-tunes on one species and predicts the other through the shared vocabulary: mouse gene tokens carry
their human orthologs' priors and each cell gets its own species token. :func:`cross_species_annotation` runs that
and the controls on one (train, test) pair; ``train`` and ``test`` may be the same species (a within-species split
of :func:`gc_lib.tasks.species_splits.donor_splits`), so the four settings go through one code path.

The simple baselines put both species in one gene space, the one-to-one orthologs measured on both sides
(:func:`one_to_one_pairs`), with counts log-normalised per cell (:func:`ortholog_features`):

- logistic regression on the training cells' highly variable orthologs (:func:`ortholog_baseline`);
- kNN in a PCA of them (:func:`ortholog_pca_knn`): the PCA is fitted on the training cells only and the test
  cells are projected into it (:func:`joint_pca`). Not ``scanpy.tl.ingest``: ingest centres the query cells on
  *their own* mean before projecting, which learns a shift from the test species (a mild batch correction) and makes
  each test cell's prediction depend on the other test cells; here a test cell is placed by the training cells'
  mean and axes alone, like every other transform of this protocol. No species correction is applied at all, so
  the baseline shows what plain orthology transfers.

Only the training cells fit anything (HVG choice, scaler, PCA, classifiers, early stopping); rare training classes are
dropped (:func:`gc_lib.tasks.species_splits.rare_classes`) and scoring is on the classes both sides share
(:func:`gc_lib.tasks.species_scores.shared_class_scores`). Getting the cells is the caller's business.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

from ..inputs.contract import SPECIES, counts_matrix
from . import baselines, finetune
from .fit_pool import CellFitJob
from .species_scores import shared_class_scores
from .species_splits import MIN_TRAIN_CELLS, rare_classes

GENECOMPASS = "fine-tuned GeneCompass"
SCRATCH = "priors, no pretraining"
FROZEN = "frozen embeddings + logistic regression"
BASELINE = "logistic regression (one-to-one orthologs)"
KNN = "kNN (joint PCA of one-to-one orthologs)"


def species_of(adata: AnnData) -> str:
    """The one species of ``adata``'s cells (``obs["species"]``); raises when it is missing, mixed or unknown."""
    if "species" not in adata.obs:
        raise ValueError(f"obs['species'] is missing: set it to one of {SPECIES}")
    found = sorted(set(adata.obs["species"].astype(str)))
    if len(found) != 1 or found[0] not in SPECIES:
        raise ValueError(f"expected the cells of one species of {SPECIES}; obs['species'] holds {found}")
    return found[0]


def one_to_one_pairs(human_genes, mouse_genes, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The one-to-one ortholog pairs ``mouse_id, human_id`` whose genes are both measured, in human-ID order.

    ``human_genes`` / ``mouse_genes``: the measured genes of each side (None: any gene of that species, for a side no
    dataset constrains). ``pairs``: a table with ``mouse_id, human_id, homology_type`` (None:
    :func:`gc_lib.inputs.genes.mouse_to_human`, the Ensembl table). A gene that appears in two kept pairs is
    dropped, so each side maps to exactly one gene.
    """
    if pairs is None:
        from ..inputs.genes import mouse_to_human
        pairs = mouse_to_human()
    kept = pairs[pairs["homology_type"] == "one2one"]
    for column, genes in (("mouse_id", mouse_genes), ("human_id", human_genes)):
        if genes is not None:
            kept = kept[kept[column].isin(set(genes))]
    kept = kept[~kept["mouse_id"].duplicated(keep=False) & ~kept["human_id"].duplicated(keep=False)]
    return kept[["mouse_id", "human_id"]].sort_values("human_id").reset_index(drop=True)


def ortholog_pairs(train: AnnData, test: AnnData, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`one_to_one_pairs` measured in ``train`` and ``test``, whichever species each holds (both may be one
    species: then the pairs whose gene of that species both measure)."""
    measured: dict[str, set | None] = {s: None for s in SPECIES}
    for adata in (train, test):
        species = species_of(adata)
        genes = set(adata.var_names)
        measured[species] = genes if measured[species] is None else measured[species] & genes
    return one_to_one_pairs(measured["human"], measured["mouse"], pairs)


def ortholog_matrix(train: AnnData, test: AnnData, pairs: pd.DataFrame) -> AnnData:
    """Raw counts of ``train``'s then ``test``'s cells on the ortholog ``pairs``, each species' columns taken from its
    own side of the pairs, so a column is one gene in both; genes named by their human ID (obs names prefixed
    ``train:`` / ``test:``)."""
    parts = [counts_matrix(a[:, pairs[f"{species_of(a)}_id"].to_numpy()]) for a in (train, test)]
    x = sp.vstack([sp.csr_matrix(p) for p in parts]).tocsr() if any(sp.issparse(p) for p in parts) else np.vstack(parts)
    obs = pd.DataFrame(index=[f"train:{n}" for n in train.obs_names] + [f"test:{n}" for n in test.obs_names])
    return AnnData(x, obs=obs, var=pd.DataFrame(index=pairs["human_id"].to_numpy()))


@dataclass(frozen=True)
class OrthologFeatures:
    """Log-normalised counts of the training cells' most variable one-to-one orthologs, for both sides."""
    train: np.ndarray     # (training cells × genes), float32
    test: np.ndarray      # (test cells × genes), float32
    genes: list[str]      # human IDs of the columns
    orthologs: int        # one-to-one pairs measured on both sides, before the HVG choice


def ortholog_features(train: AnnData, test: AnnData, *, pairs: pd.DataFrame | None = None,
                      n_top_genes: int = 2000) -> OrthologFeatures:
    """Both sides on the one-to-one orthologs (:func:`ortholog_pairs`), log-normalised cell by cell, restricted to
    the ``n_top_genes`` chosen on the training cells only (:func:`gc_lib.tasks.baselines.hvg_mask`)."""
    pairs = ortholog_pairs(train, test, pairs)
    if pairs.empty:
        raise ValueError("no one-to-one ortholog is measured in both species")
    lognorm = baselines.log_normalise(ortholog_matrix(train, test, pairs))
    keep = baselines.hvg_mask(lognorm, n_top_genes, fit_on=np.arange(train.n_obs))
    x = lognorm.X[:, keep]
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)
    return OrthologFeatures(x[: train.n_obs], x[train.n_obs:], list(lognorm.var_names[keep]), len(pairs))


def _train_labels(train: AnnData, label_key: str) -> np.ndarray:
    if label_key not in train.obs:
        raise KeyError(f"train.obs has no column {label_key!r}; columns: {list(train.obs.columns)}")
    return train.obs[label_key].astype(str).to_numpy()


def ortholog_baseline(train: AnnData, test: AnnData, label_key: str = "cell_type", *,
                      pairs: pd.DataFrame | None = None, n_top_genes: int = 2000,
                      seed: int = 0) -> tuple[np.ndarray, dict]:
    """Predict ``test``'s cells with a logistic regression (scaler included) fitted on ``train``'s
    ``label_key``, on :func:`ortholog_features`. Returns the predictions and ``{orthologs, genes}`` (the pair count
    and the human IDs of the genes used)."""
    features = ortholog_features(train, test, pairs=pairs, n_top_genes=n_top_genes)
    predicted = baselines.fit_predict_logistic(features.train, _train_labels(train, label_key), features.test,
                                                seed=seed)
    return predicted, {"orthologs": features.orthologs, "genes": features.genes}


def joint_pca(features: OrthologFeatures, n_components: int = 50, seed: int = 0) -> tuple[PCA, np.ndarray,
                                                                                           np.ndarray]:
    """A PCA fitted on the training cells only (their mean, their axes), and both sides projected into it:
    ``(pca, train coordinates, test coordinates)``."""
    n_components = min(n_components, len(features.train) - 1, features.train.shape[1])
    pca = PCA(n_components=n_components, random_state=seed).fit(features.train)
    return pca, pca.transform(features.train), pca.transform(features.test)


def ortholog_pca_knn(train: AnnData, test: AnnData, label_key: str = "cell_type", *,
                     pairs: pd.DataFrame | None = None, n_top_genes: int = 2000, n_components: int = 50, k: int = 15,
                     seed: int = 0) -> tuple[np.ndarray, dict]:
    """Predict ``test``'s cells by a distance-weighted vote of their ``k`` nearest training cells in
    :func:`joint_pca` of :func:`ortholog_features`. Returns the predictions and ``{orthologs, genes,
    pca_components, explained_variance}`` (the share of the training cells' variance the PCA keeps)."""
    features = ortholog_features(train, test, pairs=pairs, n_top_genes=n_top_genes)
    return _pca_knn(features, _train_labels(train, label_key), n_components, k, seed)


def _pca_knn(features: OrthologFeatures, labels: np.ndarray, n_components: int, k: int,
             seed: int) -> tuple[np.ndarray, dict]:
    """:func:`ortholog_pca_knn` on features already made (the annotation run shares them with the regression)."""
    pca, train_pcs, test_pcs = joint_pca(features, n_components, seed)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_pcs)), weights="distance")
    predicted = knn.fit(train_pcs, labels).predict(test_pcs)
    return predicted, {"orthologs": features.orthologs, "genes": features.genes,
                       "pca_components": int(pca.n_components_),
                       "explained_variance": float(pca.explained_variance_ratio_.sum())}


def training_cells(train: AnnData, label_key: str = "cell_type",
                   min_train_cells: int = MIN_TRAIN_CELLS) -> tuple[AnnData, np.ndarray, dict[str, int]]:
    """``train`` without the cells of its rare classes (:func:`~gc_lib.tasks.species_splits.rare_classes`), their
    labels, and the dropped classes → their cell counts: the training side every method of
    :func:`cross_species_annotation` learns from."""
    labels = _train_labels(train, label_key)
    dropped = rare_classes(labels, min_train_cells)
    kept = ~np.isin(labels, list(dropped))
    return train[kept], labels[kept], dropped


def _jobs(kept: AnnData, label_key: str, checkpoint, model_dir, config: finetune.FinetuneConfig,
          scratch_control: bool) -> dict[str, CellFitJob]:
    runs = {GENECOMPASS: ("finetuned", config)}
    if scratch_control:
        runs[SCRATCH] = ("from_scratch", replace(config, from_scratch=True))
    return {method: CellFitJob(kept, label_key, Path(checkpoint), Path(model_dir) / folder, settings)
            for method, (folder, settings) in runs.items()}


def finetune_jobs(train: AnnData, checkpoint: str | os.PathLike, model_dir: str | os.PathLike,
                  config: finetune.FinetuneConfig, *, label_key: str = "cell_type",
                  min_train_cells: int = MIN_TRAIN_CELLS, scratch_control: bool = False) -> dict[str, CellFitJob]:
    """Method → the fine-tuning :class:`~gc_lib.tasks.fit_pool.CellFitJob` that :func:`cross_species_annotation`
    runs for this training side (same cells, folders and settings): the pretrained model into
    ``model_dir/finetuned`` and, with ``scratch_control``, the same architecture and priors freshly initialised into
    ``model_dir/from_scratch``. Fit many splits' jobs ahead, side by side
    (:func:`~gc_lib.tasks.fit_pool.fit_cell_classifiers`), and the annotation with ``reuse=True`` reads them."""
    kept, _, _ = training_cells(train, label_key, min_train_cells)
    return _jobs(kept.copy(), label_key, checkpoint, model_dir, config, scratch_control)


def _finetuned_predictions(kept: AnnData, test: AnnData, label_key: str, checkpoint, model_dir,
                           config: finetune.FinetuneConfig, scratch_control: bool, reuse: bool,
                           progress: bool) -> dict[str, np.ndarray]:
    """Fine-tune on the training cells ``kept`` (:func:`_jobs`) and predict ``test``."""
    predictions = {}
    for method, job in _jobs(kept, label_key, checkpoint, model_dir, config, scratch_control).items():
        finetune.fit_cell_classifier(job.adata, label_key, checkpoint, job.out_dir, job.config, reuse=reuse,
                                     progress=progress)
        predicted = finetune.predict_cells(test, job.out_dir, key_added="predicted", copy=True)
        predictions[method] = predicted.obs["predicted"].astype(str).to_numpy()
    return predictions


def _frozen_predictions(train: AnnData, test: AnnData, labels: np.ndarray, embedding_key: str,
                        seed: int) -> np.ndarray:
    """Logistic regression of the training ``labels`` on the cell embeddings in ``obsm[embedding_key]`` (from
    :func:`gc_lib.embed`)."""
    missing = [name for name, a in (("train", train), ("test", test)) if embedding_key not in a.obsm]
    if missing:
        raise KeyError(f"{' and '.join(missing)} lack obsm[{embedding_key!r}]: run gc_lib.embed(adata, checkpoint) "
                       f"on each species first")
    return baselines.fit_predict_logistic(np.asarray(train.obsm[embedding_key]), labels,
                                          np.asarray(test.obsm[embedding_key]), seed=seed)


def cross_species_annotation(train: AnnData, test: AnnData, checkpoint: str | os.PathLike | None,
                             model_dir: str | os.PathLike | None, config: finetune.FinetuneConfig, *,
                             label_key: str = "cell_type", pairs: pd.DataFrame | None = None,
                             n_top_genes: int = 2000, min_train_cells: int = MIN_TRAIN_CELLS,
                             scratch_control: bool = False, embedding_key: str | None = None,
                             reuse: bool = False, progress: bool = False) -> tuple[dict, pd.DataFrame]:
    """Train every method on ``train``'s cells and predict ``test``'s; score on the classes both share.

    ``train``, ``test``: contract AnnData, one species each (``obs["species"]``), either way round or the same
    species. Classes with fewer than ``min_train_cells`` training cells are dropped first. Methods: the two
    ortholog baselines (:data:`BASELINE`, :data:`KNN`); with a ``checkpoint``, :data:`GENECOMPASS` fine-tuned into
    ``model_dir`` (and :data:`SCRATCH` with ``scratch_control``); with ``embedding_key``, :data:`FROZEN`.
    ``config.seed`` seeds every method (give each split's seed). ``reuse`` as in
    :func:`gc_lib.tasks.finetune.fit_cell_classifier`. ``pairs``: the ortholog table (None: read
    :func:`gc_lib.inputs.genes.mouse_to_human` on every call; load it once and pass it when running many splits).

    Returns a JSON-ready summary (species, cells, ``train_classes``, ``dropped_rare_classes``, ``shared_classes``,
    ``excluded_test_cells`` by class, ortholog counts, ``methods``: :meth:`SharedClassScores.summary` per method)
    and the test cells' predictions (``truth`` and one column per method).
    """
    if config.from_scratch:
        raise ValueError("config.from_scratch is set: pass the pretrained config and scratch_control=True")
    if checkpoint is not None and model_dir is None:
        raise ValueError("fine-tuning needs a model_dir to write the fine-tuned models into")
    train, labels, dropped = training_cells(train, label_key, min_train_cells)
    predictions = {}
    if checkpoint is not None:
        predictions |= _finetuned_predictions(train, test, label_key, checkpoint, model_dir, config,
                                              scratch_control, reuse, progress)
    if embedding_key is not None:
        predictions[FROZEN] = _frozen_predictions(train, test, labels, embedding_key, config.seed)
    features = ortholog_features(train, test, pairs=pairs, n_top_genes=n_top_genes)
    predictions[BASELINE] = baselines.fit_predict_logistic(features.train, labels, features.test, seed=config.seed)
    predictions[KNN], _ = _pca_knn(features, labels, n_components=50, k=15, seed=config.seed)
    table = pd.DataFrame({"truth": test.obs[label_key].astype(str).to_numpy(), **predictions}, index=test.obs_names)
    return _summary(train, test, table, sorted(set(labels)), dropped, features), table


def _summary(train: AnnData, test: AnnData, table: pd.DataFrame, classes: list[str], dropped: dict[str, int],
             features: OrthologFeatures) -> dict:
    """:func:`cross_species_annotation`'s JSON-ready summary: every method of ``table`` scored on the classes it
    shares with the training ``classes``."""
    scores = {method: shared_class_scores(table["truth"], table[method], classes) for method in table.columns[1:]}
    first = next(iter(scores.values()))
    return {"train_species": species_of(train), "test_species": species_of(test), "train_cells": int(train.n_obs),
            "test_cells": int(test.n_obs), "train_classes": classes, "dropped_rare_classes": dropped,
            "shared_classes": first.shared_classes, "excluded_test_cells": dict(first.excluded),
            "orthologs": features.orthologs, "baseline_genes": len(features.genes),
            "methods": {method: s.summary() for method, s in scores.items()}}
