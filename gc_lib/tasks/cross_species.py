"""Cross-species cell-type annotation (notebook 05, section 6): train on human cells, predict mouse cells.

The paper fine-tunes on one species and predicts the other through the shared vocabulary: mouse gene tokens carry
their human orthologs' priors and each cell gets its own species token. The simple baseline it must beat is a
logistic regression on log-normalised counts of one-to-one orthologs, which puts both species in one gene space.
Only the training species (human) fits anything: the HVG choice, the scaler, the classifier and the fine-tuned
model's early stopping. Both species are scored on the cell types they share (one ontology for both, as in the
CELLxGENE Census); getting the cells (Census, h5ad files) is the caller's business.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..inputs.contract import counts_matrix
from . import baselines, finetune

GENECOMPASS = "fine-tuned GeneCompass"
BASELINE = "logistic regression (one-to-one orthologs)"


def shared_cell_types(human: AnnData, mouse: AnnData, label_key: str = "cell_type") -> tuple[AnnData, AnnData,
                                                                                                list[str]]:
    """Both species restricted (copies) to the cell types present in both; raises when they share none."""
    kinds = [set(a.obs[label_key].dropna().astype(str)) for a in (human, mouse)]
    shared = sorted(kinds[0] & kinds[1])
    if not shared:
        raise ValueError(f"human and mouse share no {label_key!r}: human has {sorted(kinds[0])[:5]}, "
                         f"mouse {sorted(kinds[1])[:5]}")
    keep = [a[a.obs[label_key].astype(str).isin(shared).to_numpy()].copy() for a in (human, mouse)]
    return keep[0], keep[1], shared


def one_to_one_pairs(human_genes, mouse_genes, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The one-to-one ortholog pairs ``mouse_id, human_id`` whose genes are both measured, in human-ID order.

    ``pairs``: a table with ``mouse_id, human_id, homology_type`` (None: :func:`gc_lib.inputs.genes.mouse_to_human`,
    the Ensembl table). A gene that appears in two kept pairs is dropped, so each side maps to exactly one gene.
    """
    if pairs is None:
        from ..inputs.genes import mouse_to_human
        pairs = mouse_to_human()
    kept = pairs[(pairs["homology_type"] == "one2one") & pairs["mouse_id"].isin(set(mouse_genes))
                 & pairs["human_id"].isin(set(human_genes))]
    kept = kept[~kept["mouse_id"].duplicated(keep=False) & ~kept["human_id"].duplicated(keep=False)]
    return kept[["mouse_id", "human_id"]].sort_values("human_id").reset_index(drop=True)


def ortholog_matrix(human: AnnData, mouse: AnnData, pairs: pd.DataFrame) -> AnnData:
    """Raw counts of both species on the ortholog pairs: human cells first, then mouse cells; genes named by their
    human ID, mouse columns reordered to match."""
    parts = [counts_matrix(human[:, pairs["human_id"].to_numpy()]),
             counts_matrix(mouse[:, pairs["mouse_id"].to_numpy()])]
    x = sp.vstack([sp.csr_matrix(p) for p in parts]).tocsr() if any(sp.issparse(p) for p in parts) else np.vstack(parts)
    obs = pd.DataFrame(index=[f"human:{n}" for n in human.obs_names] + [f"mouse:{n}" for n in mouse.obs_names])
    return AnnData(x, obs=obs, var=pd.DataFrame(index=pairs["human_id"].to_numpy()))


def ortholog_baseline(human: AnnData, mouse: AnnData, label_key: str = "cell_type", *,
                      pairs: pd.DataFrame | None = None, n_top_genes: int = 2000, seed: int = 0) -> tuple[np.ndarray,
                                                                                                          dict]:
    """Predict the mouse cells' ``label_key`` with a logistic regression trained on the human cells, on
    log-normalised counts of one-to-one orthologs (:func:`one_to_one_pairs`). HVGs are chosen on the human cells
    only and the scaler is fitted on them only. Returns the mouse predictions and ``{orthologs, genes}`` (the pair
    count and the human IDs of the genes used)."""
    pairs = one_to_one_pairs(human.var_names, mouse.var_names, pairs)
    if pairs.empty:
        raise ValueError("no one-to-one ortholog is measured in both species")
    lognorm = baselines.log_normalise(ortholog_matrix(human, mouse, pairs))
    train, test = np.arange(human.n_obs), np.arange(human.n_obs, lognorm.n_obs)
    keep = baselines.hvg_mask(lognorm, n_top_genes, fit_on=train)
    x = lognorm.X[:, keep]
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)
    labels = np.concatenate([human.obs[label_key].astype(str).to_numpy(), np.full(mouse.n_obs, "")])
    predicted = baselines.logistic_regression(x, labels, train, test, seed=seed)
    return predicted, {"orthologs": len(pairs), "genes": list(lognorm.var_names[keep])}


def cross_species_annotation(human: AnnData, mouse: AnnData, checkpoint: str | os.PathLike,
                             model_dir: str | os.PathLike, config: finetune.FinetuneConfig, *,
                             label_key: str = "cell_type", pairs: pd.DataFrame | None = None,
                             n_top_genes: int = 2000, reuse: bool = False,
                             progress: bool = False) -> tuple[dict, pd.DataFrame]:
    """Fine-tune ``checkpoint`` on the human cells (into ``model_dir``), predict the mouse cells, run
    :func:`ortholog_baseline`, and score both on the mouse cells of the shared cell types.

    Returns a JSON-ready summary (``shared_cell_types``, cell and ortholog counts, ``methods``: accuracy and
    macro-F1 per method) and the mouse cells' predictions (``truth`` and one column per method).
    """
    human, mouse, shared = shared_cell_types(human, mouse, label_key)
    finetune.fit_cell_classifier(human, label_key, checkpoint, model_dir, config, reuse=reuse, progress=progress)
    predicted = finetune.predict_cells(mouse, model_dir, key_added="cross_species", copy=True)
    baseline, info = ortholog_baseline(human, mouse, label_key, pairs=pairs, n_top_genes=n_top_genes,
                                       seed=config.seed)
    table = pd.DataFrame({"truth": mouse.obs[label_key].astype(str).to_numpy(),
                          GENECOMPASS: predicted.obs["cross_species"].astype(str).to_numpy(),
                          BASELINE: baseline}, index=mouse.obs_names)
    methods = {m: baselines.scores(table["truth"], table[m]) for m in (GENECOMPASS, BASELINE)}
    summary = {"shared_cell_types": shared, "human_cells": int(human.n_obs), "mouse_cells": int(mouse.n_obs),
               "orthologs": info["orthologs"], "baseline_genes": len(info["genes"]), "methods": methods}
    return summary, table
