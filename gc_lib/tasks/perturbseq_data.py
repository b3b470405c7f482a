"""Perturb-seq conditions in GEARS's format, their mean profiles, and GEARS's ``simulation`` split (notebook 07).

**Format** (GEARS, Roohani et al., *Nature Biotechnology* 2024): ``obs["condition"]`` is ``"ctrl"`` for control cells,
``"A+ctrl"`` (or ``"ctrl+A"``) for a single perturbation of gene A and ``"A+B"`` for a double; genes by symbol.
:func:`gc_lib.inputs.gears_data.condition_genes` reads a condition's genes; :func:`condition_means` averages cells
per condition (the pseudobulk profiles every method is scored on).

**The simulation split** follows GEARS's ``DataSplitter(split_type="simulation")``: a random share
(``train_gene_share``, GEARS's ``train_gene_set_size``) of the perturbed genes is *seen*; training takes the singles of
seen genes and a random share (``seen2_train_share``, GEARS's ``combo_seen2_train_frac``) of the doubles with both
genes seen; the test part takes every other condition, in four kinds: ``unseen_single``, ``combo_seen0`` (neither gene
seen), ``combo_seen1``, ``combo_seen2`` (both seen, the double itself not). Seeds change the draw. The validation part
is drawn from the training conditions by the same rule (GEARS does the same with its ``val`` split), so a choice made
on it never looks at the test part. Written here rather than called from GEARS so every method — GEARS and the
baselines — gets the identical split, with or without GEARS installed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from ..inputs.gears_data import CONTROL, condition_genes

KINDS = ("unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")


@dataclass(frozen=True)
class ConditionMeans:
    """Perturbed conditions (``conditions``, sorted), their mean profiles (``means``, conditions × genes) and cell
    counts (``n_cells``), the control mean and SD per gene, and the gene names (``genes``: var names)."""

    conditions: list[str]
    means: np.ndarray
    n_cells: np.ndarray
    control_mean: np.ndarray
    control_sd: np.ndarray
    genes: list[str]


def condition_means(adata: AnnData, *, condition_key: str = "condition") -> ConditionMeans:
    """Mean profile (of ``X``, e.g. log-normalised expression) of every perturbed condition and of the controls."""
    if condition_key not in adata.obs.columns:
        raise ValueError(f"obs has no column {condition_key!r} (columns: {list(adata.obs.columns)})")
    labels = adata.obs[condition_key].astype(str).to_numpy()
    for label in np.unique(labels):
        condition_genes(label)                                   # a clear error for a label in another format
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    X = np.asarray(X, dtype=np.float64)
    control = labels == CONTROL
    if control.sum() < 2:
        raise ValueError(f"need at least 2 control cells ({condition_key} == 'ctrl'), found {int(control.sum())}")
    conditions = sorted(set(labels[~control]))
    means = np.stack([X[labels == c].mean(0) for c in conditions]) if conditions else np.zeros((0, X.shape[1]))
    n_cells = np.array([(labels == c).sum() for c in conditions])
    return ConditionMeans(conditions, means, n_cells, X[control].mean(0), X[control].std(0, ddof=1),
                          list(map(str, adata.var_names)))


def condition_rows(means: ConditionMeans, conditions) -> np.ndarray:
    """The mean profiles (conditions × genes) of ``conditions``, in their order; an error naming unknown ones."""
    index = {c: i for i, c in enumerate(means.conditions)}
    missing = [c for c in conditions if c not in index]
    if missing:
        raise ValueError(f"conditions not in the data: {missing[:5]}")
    return means.means[[index[c] for c in conditions]]


@dataclass(frozen=True)
class Split:
    """Condition lists of one split; ``kind`` maps each test (and validation) condition to its kind (:data:`KINDS`)."""

    train: list[str]
    validation: list[str]
    test: list[str]
    kind: dict[str, str]


def _draw(conditions: list[str], gene_share: float, seen2_share: float, rng: np.random.Generator):
    """One GEARS-style draw: (kept conditions, held-out conditions, kind of each held-out condition)."""
    genes = sorted({g for c in conditions for g in condition_genes(c)})
    seen = set(rng.choice(genes, size=int(round(len(genes) * gene_share)), replace=False)) if genes else set()
    kept, held, kind = [], [], {}
    seen2 = []
    for condition in conditions:
        members = condition_genes(condition)
        n_seen = sum(g in seen for g in members)
        if len(members) == 1:
            (kept if n_seen else held).append(condition)
            if not n_seen:
                kind[condition] = "unseen_single"
        elif n_seen == 2:
            seen2.append(condition)
        else:
            held.append(condition)
            kind[condition] = f"combo_seen{n_seen}"
    order = rng.permutation(len(seen2))
    n_train = int(round(len(seen2) * seen2_share))
    for rank, index in enumerate(order):
        condition = seen2[index]
        if rank < n_train:
            kept.append(condition)
        else:
            held.append(condition)
            kind[condition] = "combo_seen2"
    return sorted(kept), sorted(held), kind


def simulation_split(conditions, *, seed: int = 1, train_gene_share: float = 0.75, seen2_train_share: float = 0.75,
                     validation_gene_share: float = 0.9, validation_seen2_share: float = 0.9) -> Split:
    """GEARS's ``simulation`` split of the perturbed ``conditions`` (module docstring); the validation part is drawn
    from the training conditions with the ``validation_*`` shares (GEARS: 0.9 and 0.9)."""
    conditions = sorted({str(c) for c in conditions} - {CONTROL})
    for share in (train_gene_share, seen2_train_share, validation_gene_share, validation_seen2_share):
        if not 0 < share <= 1:
            raise ValueError(f"shares must lie in (0, 1], got {share}")
    if not conditions:
        raise ValueError("no perturbed conditions to split")
    rng = np.random.default_rng(seed)
    train_all, test, kind = _draw(conditions, train_gene_share, seen2_train_share, rng)
    train, validation, validation_kind = _draw(train_all, validation_gene_share, validation_seen2_share, rng)
    return Split(train, validation, test, {**validation_kind, **kind})


def split_table(split: Split) -> pd.DataFrame:
    """One row per condition: its part (train / validation / test), its kind (``train`` for training conditions)
    and the number of genes it perturbs."""
    rows = [(c, part, split.kind.get(c, "train"), len(condition_genes(c)))
            for part in ("train", "validation", "test") for c in getattr(split, part)]
    return pd.DataFrame(rows, columns=["condition", "part", "kind", "n_genes"])
