"""Train/test splits of labelled cells for cell-type annotation within and across species (notebook 05).

A split is a pair of cell positions, so every method (fine-tuning, frozen embeddings, the baselines) sees exactly the
same cells. Three rules, chosen so that the numbers mean the same in the four settings (human→human, mouse→mouse,
human→mouse, mouse→human):

**Rare classes** (:func:`rare_classes`). A class with fewer than ``min_train_cells`` (default
:data:`MIN_TRAIN_CELLS` = 10) cells in the training part of a split is dropped from that split's task: its training
cells are removed (no method learns it) and its test cells are left out of the score and counted
(:func:`gc_lib.tasks.species_scores.shared_class_scores`). Why 10: fine-tuning holds out a stratified 15 % of the
training cells for early stopping and needs every class on both sides; a 15-neighbour vote or a logistic regression
learns little from fewer; and the F1 of Baron's 2–8-cell classes (Schwann cells, T cells, epsilon cells) would be
noise that moves macro-F1 more than any real difference between methods.

**Within a species** (:func:`donor_splits`): leave one donor out, so the test asks "does it work on a donor it has
not seen?". Used when every fold keeps every class the species has enough of: each class with at least
``min_train_cells`` cells in all donors together keeps at least ``min_train_cells`` cells in the training donors of
every fold. Otherwise (a class lives mostly in one donor, or there are fewer than two donors) the split falls back to
a stratified one by cell type (``test_fraction`` of each class in the test part), and :attr:`SplitPlan.reason` says
which fold would have lost which class. On all of Baron's cells this gives donor splits for human (4 donors) and
the stratified fallback for mouse (9 of the 191 alpha cells are in donor mouse1); a random subset of the cells (as
notebook 05 keeps on small profiles) can push a human class under the bar in some fold, and then the fallback
applies there too — :attr:`SplitPlan.reason` says which held.

**What a seed means.** Donor splits: seed ``s`` holds out the donor ``sorted(donors)[s % n_donors]`` and is the
model's seed, so with 4 donors and seeds 0–4 seed 4 holds out the first donor again with another model seed, and
mean ± sd mixes donor-to-donor and model variation. Stratified splits: the seed is the split's random state and the
model's seed. Across species (:func:`cross_species_splits`): every seed trains on all cells of one species and tests
on all cells of the other; the seed varies only the models (initialisation, batch order, the fine-tuning validation
split, the baselines' solvers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .baselines import stratified_splits

#: fewest training cells a class needs to be part of a split's task (see the module docstring for why)
MIN_TRAIN_CELLS = 10
DONOR, STRATIFIED, SPECIES = "donor", "stratified", "species"


@dataclass(frozen=True)
class Split:
    """One seed's cells: positions into the training and the test cells (the same AnnData within a species).

    ``train`` lacks the cells of rare classes (``dropped_classes``: class → its training cells); ``test`` holds every
    labelled test cell, and scoring leaves out those whose class the training part lacks. Unpacks as
    ``train, test = split``, the pairs :func:`gc_lib.tasks.baselines.score_splits` takes.
    """
    seed: int
    kind: str
    train: np.ndarray
    test: np.ndarray
    held_out_donors: tuple[str, ...] = ()
    dropped_classes: dict[str, int] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.train, self.test))


@dataclass(frozen=True)
class SplitPlan:
    """The splits of every seed, their ``kind`` (:data:`DONOR`, :data:`STRATIFIED` or :data:`SPECIES`) and a sentence
    saying why that kind was used, for the notebook to print."""
    kind: str
    reason: str
    splits: list[Split]

    def __iter__(self):
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    def __getitem__(self, index: int) -> Split:
        return self.splits[index]


def rare_classes(labels, min_train_cells: int = MIN_TRAIN_CELLS) -> dict[str, int]:
    """The classes of the training ``labels`` with fewer than ``min_train_cells`` cells → their cell counts."""
    counts = pd.Series(np.asarray(labels, dtype=str)).value_counts()
    return {str(c): int(n) for c, n in counts[counts < min_train_cells].sort_index().items()}


def _without_rare(labels: np.ndarray, train: np.ndarray, min_train_cells: int) -> tuple[np.ndarray, dict[str, int]]:
    """``train`` positions minus the cells of the classes too rare in it, and those classes."""
    dropped = rare_classes(labels[train], min_train_cells)
    return np.sort(train[~np.isin(labels[train], list(dropped))]), dropped


def _labels(obs: pd.DataFrame, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Every cell's label as str, and the positions of the labelled cells (unlabelled cells join no split)."""
    if label_key not in obs:
        raise KeyError(f"obs has no column {label_key!r}; columns: {list(obs.columns)}")
    return obs[label_key].astype(str).to_numpy(), np.flatnonzero(obs[label_key].notna().to_numpy())


def donor_fold_problems(labels, donors, min_train_cells: int = MIN_TRAIN_CELLS) -> list[str]:
    """Why leave-one-donor-out splits would not do: one line per (held-out donor, class) where a class with at least
    ``min_train_cells`` cells overall keeps fewer training cells; one line when there are fewer than two donors.
    An empty list means donor splits keep every such class in every fold."""
    labels, donors = np.asarray(labels, dtype=str), np.asarray(donors, dtype=str)
    names = sorted(set(donors))
    if len(names) < 2:
        return [f"{len(names)} donor(s): a donor split needs at least two"]
    overall = pd.Series(labels).value_counts()
    kept = overall[overall >= min_train_cells].index
    problems = []
    for donor in names:
        left = pd.Series(labels[donors != donor]).value_counts().reindex(kept, fill_value=0)
        problems += [f"holding out {donor} leaves {c!r} {n} training cells (< {min_train_cells})"
                     for c, n in left[left < min_train_cells].items()]
    return problems


def _strata(labels: np.ndarray, min_train_cells: int) -> np.ndarray:
    """Labels to stratify on: classes too small to be kept anyway share one stratum (the split needs ≥ 2 cells per
    stratum); a lone such cell joins the largest class."""
    strata = labels.copy()
    small = np.isin(labels, list(rare_classes(labels, min_train_cells)))
    strata[small] = "(rare classes)"
    if small.sum() == 1:
        strata[small] = pd.Series(labels).value_counts().index[0]
    return strata


def _stratified(labels, positions, seed, test_fraction, min_train_cells) -> Split:
    [(train, test)] = stratified_splits(labels[positions], [seed], test_fraction,
                                        strata=_strata(labels[positions], min_train_cells))
    train, dropped = _without_rare(labels, positions[train], min_train_cells)
    return Split(seed, STRATIFIED, train, positions[test], dropped_classes=dropped)


def _leave_donor_out(labels, donors, positions, seed, min_train_cells) -> Split:
    names = sorted(set(donors[positions]))
    held_out = names[seed % len(names)]
    train, dropped = _without_rare(labels, positions[donors[positions] != held_out], min_train_cells)
    return Split(seed, DONOR, train, positions[donors[positions] == held_out], (held_out,), dropped)


def donor_splits(obs: pd.DataFrame, seeds, *, label_key: str = "cell_type", donor_key: str = "donor",
                 min_train_cells: int = MIN_TRAIN_CELLS, test_fraction: float = 0.3) -> SplitPlan:
    """Within-species splits of the labelled cells of ``obs``, one per seed: leave one donor out when every fold
    keeps the classes (:func:`donor_fold_problems`), else stratified by ``label_key``; rare classes dropped per
    split. The module docstring gives the rules and what a seed means."""
    labels, positions = _labels(obs, label_key)
    donors = obs[donor_key].astype(str).to_numpy() if donor_key in obs else np.full(len(obs), "all")
    problems = donor_fold_problems(labels[positions], donors[positions], min_train_cells)
    if problems:
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        reason = (f"stratified by {label_key} ({test_fraction:.0%} of each class tested): "
                  f"{'; '.join(problems[:2])}{more}")
        return SplitPlan(STRATIFIED, reason, [_stratified(labels, positions, s, test_fraction, min_train_cells)
                                              for s in seeds])
    n_donors = len(set(donors[positions]))
    reason = (f"leave one donor out ({n_donors} donors, seed s holds out donor s mod {n_donors}): every class with "
              f"≥ {min_train_cells} cells keeps ≥ {min_train_cells} training cells in every fold")
    return SplitPlan(DONOR, reason, [_leave_donor_out(labels, donors, positions, s, min_train_cells) for s in seeds])


def cross_species_splits(train_obs: pd.DataFrame, test_obs: pd.DataFrame, seeds, *, label_key: str = "cell_type",
                         min_train_cells: int = MIN_TRAIN_CELLS) -> SplitPlan:
    """Across species, one split per seed, all alike: every labelled cell of ``train_obs`` (minus rare classes)
    trains, every labelled cell of ``test_obs`` is tested; seeds vary only the models."""
    train_labels, train = _labels(train_obs, label_key)
    _, test = _labels(test_obs, label_key)
    train, dropped = _without_rare(train_labels, train, min_train_cells)
    species = [", ".join(sorted(set(o["species"].astype(str)))) if "species" in o else "?"
               for o in (train_obs, test_obs)]
    reason = (f"across species: the {len(train)} {species[0]} cells of classes with ≥ {min_train_cells} cells train, "
              f"all {len(test)} {species[1]} cells are tested; seeds vary only the models")
    return SplitPlan(SPECIES, reason, [Split(s, SPECIES, train, test, dropped_classes=dict(dropped)) for s in seeds])
