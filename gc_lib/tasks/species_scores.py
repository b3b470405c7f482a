"""Scores of cell-type annotation within and across species, and a short look at why they are what they are.

**Shared-class scoring** (:func:`shared_class_scores`). A classifier trained on one species can only name the
classes it was trained on; a test cell whose class the training side lacks (an acinar cell when mouse trains, a class
dropped as rare) cannot be right, so it is left out of the score and counted instead. The scored cells give accuracy,
macro-F1 over the *shared* classes (classes of the training side that the test cells have; every class weighs the
same, however rare), per-class F1 and a confusion matrix whose columns also hold the training classes the test side
lacks, since predicting those is a real error.

**Why** (:func:`per_class_with_sizes`, :func:`prior_token_share`). Per-class F1 next to each class's training and
test cells, and how much of each species' input the two species share through the priors. The share follows what
the code does (:func:`gc_lib.priors.store.align_to_vocab`): a human gene token takes its own gene's prior vectors; a
mouse gene token takes its human ortholog's vectors when the vocabulary's ortholog (``Vocabulary.genes``
``human_ortholog``, one per mouse gene) has an allowed homology type (one-to-one by default), and only when that
human gene is in the prior's resource (the mask a checkpoint stores as ``genes.has_<prior>``). Gene identities are
separate tokens per species, so the priors, the expression values and the shared encoder are what the two species'
cells have in common.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from ..corpus.vocab import SPECIAL_TOKENS, Vocabulary
from ..priors.store import ORTHOLOGY


@dataclass(frozen=True)
class SharedClassScores:
    """Scores on the test cells whose class the training side has (see the module docstring)."""
    accuracy: float
    macro_f1: float                 # mean F1 over shared_classes
    per_class_f1: pd.Series         # indexed by shared_classes
    confusion: pd.DataFrame         # truth (shared classes) × predicted (shared classes, then other predictions)
    shared_classes: list[str]
    excluded: dict[str, int]        # test classes the training side lacks → their cells, left out

    @property
    def scored_cells(self) -> int:
        return int(self.confusion.to_numpy().sum())

    @property
    def excluded_cells(self) -> int:
        return int(sum(self.excluded.values()))

    def summary(self) -> dict:
        """JSON-ready: accuracy, macro-F1, scored and excluded cells, excluded classes, per-class F1."""
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "scored_cells": self.scored_cells,
                "excluded_cells": self.excluded_cells, "excluded_classes": dict(self.excluded),
                "per_class_f1": {c: float(f) for c, f in self.per_class_f1.items()}}


def shared_class_scores(truth, predicted, train_classes: Iterable[str]) -> SharedClassScores:
    """Score ``predicted`` against ``truth`` (test cells) on the classes shared with ``train_classes`` (the classes
    the classifier was trained on). Raises ``ValueError`` when no test cell has a training class."""
    truth, predicted = np.asarray(truth, dtype=str), np.asarray(predicted, dtype=str)
    if truth.shape != predicted.shape:
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    scored = np.isin(truth, sorted(set(map(str, train_classes))))
    if not scored.any():
        raise ValueError(f"no test cell has a training class; test classes: {sorted(set(truth))[:5]}")
    truth_in, predicted_in = truth[scored], predicted[scored]
    shared = sorted(set(truth_in.tolist()))
    columns = shared + sorted(set(predicted_in.tolist()) - set(shared))
    counts = confusion_matrix(truth_in, predicted_in, labels=columns)[: len(shared)]
    confusion = pd.DataFrame(counts, index=pd.Index(shared, name="truth"), columns=pd.Index(columns, name="predicted"))
    f1 = f1_score(truth_in, predicted_in, labels=shared, average=None, zero_division=0)
    return SharedClassScores(accuracy=float((truth_in == predicted_in).mean()), macro_f1=float(np.mean(f1)),
                             per_class_f1=pd.Series(f1, index=shared, name="f1"), confusion=confusion,
                             shared_classes=shared, excluded=dict(sorted(Counter(truth[~scored].tolist()).items())))


def per_class_with_sizes(per_class_f1: pd.Series | pd.DataFrame, train_labels, test_labels) -> pd.DataFrame:
    """Per class: its training and test cells, then its F1 (``per_class_f1``: a Series by class, or a DataFrame of
    methods × classes as :func:`gc_lib.tasks.baselines.per_class_table` makes). Every class of either side has a
    row (F1 NaN where it was not scored); most training cells first."""
    f1 = per_class_f1.to_frame("f1") if isinstance(per_class_f1, pd.Series) else per_class_f1.T
    sizes = pd.DataFrame({"train_cells": pd.Series(np.asarray(train_labels, dtype=str)).value_counts(),
                          "test_cells": pd.Series(np.asarray(test_labels, dtype=str)).value_counts()})
    table = sizes.join(f1, how="outer")
    table[["train_cells", "test_cells"]] = table[["train_cells", "test_cells"]].fillna(0).astype(int)
    table.index.name = "class"
    return table.sort_values(["train_cells", "test_cells"], ascending=False)


def prior_lookup_genes(vocab: Vocabulary, orthology: str = "one2one") -> np.ndarray:
    """Per gene token (row of ``vocab.genes``): the human gene whose prior vectors it takes, as
    :func:`gc_lib.priors.store.align_to_vocab` looks them up ("" for a mouse gene without an allowed ortholog)."""
    genes = vocab.genes
    allowed = genes["homology_type"].isin(ORTHOLOGY[orthology]).to_numpy()
    partner = np.where(allowed, genes["human_ortholog"].fillna("").astype(str), "")
    return np.where((genes["species"] == "human").to_numpy(), genes["gene_id"].astype(str), partner)


def _species_tokens(vocab: Vocabulary, gene_ids, species: str) -> np.ndarray:
    """Rows of ``vocab.genes`` of the dataset's genes that are ``species`` tokens (as the tokenizer looks them up)."""
    rows = vocab.encode(list(gene_ids)) - len(SPECIAL_TOKENS)
    rows = np.unique(rows[rows >= 0])
    return rows[(vocab.genes["species"].to_numpy()[rows] == species)]


def prior_token_share(vocab: Vocabulary, genes_by_species: Mapping[str, Iterable[str]],
                      prior_masks: Mapping[str, np.ndarray] | None = None, *,
                      orthology: str = "one2one") -> pd.DataFrame:
    """How much of each species' input can come from human prior vectors, one row per species of
    ``genes_by_species`` (species → the dataset's Ensembl IDs; ``vocab``: the checkpoint's, ``Tokenizer.vocab``):

    - ``genes``, ``tokens``: the dataset's genes, and those the vocabulary has as that species' tokens;
    - ``prior_lookup_tokens`` / ``_share``: tokens whose priors are looked up under a human gene
      (:func:`prior_lookup_genes`): every human token, mouse tokens with an ``orthology`` ortholog;
    - ``shared_prior_tokens`` / ``_share``: of those, tokens whose human gene is also looked up by a token of another
      species' dataset, i.e. both species' cells get the very same prior vectors for that gene;
    - ``<prior>_share`` per mask of ``prior_masks`` (prior → bool per token id; :func:`checkpoint_prior_masks`):
      tokens that really carry that prior (the human gene is in the prior's resource).

    Shares are of ``tokens``. ``orthology`` must be the one the priors were aligned with.
    """
    rows = {s: _species_tokens(vocab, genes, s) for s, genes in genes_by_species.items()}
    lookup = prior_lookup_genes(vocab, orthology)
    looked_up = {s: set(lookup[r]) - {""} for s, r in rows.items()}
    table = {}
    for species, token_rows in rows.items():
        genes = lookup[token_rows]
        others = set().union(*(looked_up[s] for s in rows if s != species))
        n = max(len(token_rows), 1)
        lookups, shared = int((genes != "").sum()), int(np.isin(genes, list(others)).sum())
        row = {"genes": len(set(genes_by_species[species])), "tokens": len(token_rows),
               "prior_lookup_tokens": lookups, "prior_lookup_share": lookups / n,
               "shared_prior_tokens": shared, "shared_prior_share": shared / n}
        for name, mask in (prior_masks or {}).items():
            row[f"{name}_share"] = float(np.asarray(mask, dtype=bool)[token_rows + len(SPECIAL_TOKENS)].sum() / n)
        table[species] = row
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("species")


def checkpoint_prior_masks(checkpoint: str | os.PathLike) -> dict[str, np.ndarray]:
    """The prior masks a checkpoint's model really uses (``genes.has_<prior>`` in ``model.safetensors``, pretrained
    or fine-tuned): prior → bool per token id. Empty for a model without priors."""
    from safetensors import safe_open

    masks = {}
    with safe_open(str(Path(checkpoint) / "model.safetensors"), framework="numpy") as tensors:
        for key in tensors.keys():
            found = re.fullmatch(r"(?:.+\.)?genes\.has_(\w+)", key)     # a fine-tuned model nests it as encoder.…
            if found:
                masks[found.group(1)] = tensors.get_tensor(key).astype(bool)
    return masks
