"""In-silico deletion as TF→target evidence (notebook 06): delete a TF from the cells that express it and rank the
other genes of those cells by how far their contextual states move (:func:`gc_lib.tasks.perturb.perturb`).

The paper reads a TF's targets off this ranking and reports their enrichment over k/N. Here the ranking becomes a
scores table (``tf, target, score``) like any other edge predictor, so it is scored with the same code
(:mod:`gc_lib.tasks.grn_eval`: precision@k per TF against the positive rate k/N, AUPRC, early precision) on the
same universe as its baselines. A gene's shift is defined only for the cells where it sits beside the TF, so the
universe of a TF is the genes measured in at least ``min_cells`` of its cells.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..corpus.vocab import Vocabulary
from .perturb import PerturbResult
from .perturb_edits import PerturbationSet


def deletion_perturbations(vocab: Vocabulary, tf_ids) -> PerturbationSet:
    """One deletion per human TF (Ensembl IDs) that is a token, named by its Ensembl ID; TFs that are not tokens are
    left out (compare the names with the input)."""
    tokens = vocab.encode(list(tf_ids))
    keep = tokens >= 0
    return PerturbationSet.build(tokens[keep].tolist(), "delete", names=list(np.asarray(tf_ids, dtype=object)[keep]))


def deletion_scores(result: PerturbResult, vocab: Vocabulary, *, min_cells: int = 1) -> pd.DataFrame:
    """The engine's per-gene shifts as edges: ``tf`` (the perturbation's name), ``target`` (the gene's Ensembl ID),
    ``score`` (mean shift over the cells), ``n_cells``; human target genes measured in >= ``min_cells`` cells only."""
    genes = result.genes
    human = vocab.genes["species"].reindex(genes["token"]).to_numpy() == "human"
    kept = genes[human & (genes["n_cells"] >= min_cells).to_numpy()]
    return pd.DataFrame({"tf": kept["name"].to_numpy(), "target": vocab.genes.loc[kept["token"], "gene_id"].to_numpy(),
                         "score": kept["mean_shift"].to_numpy(), "n_cells": kept["n_cells"].to_numpy()})
