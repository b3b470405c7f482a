"""The in-silico cell-fate screen: edit every candidate TF in the start cells and rank the TFs by how far the cells
move toward the goal state and away from the alternative states (the paper's ESC → gonadal screen, notebook 10).

    case = ScreenCase("acinar → beta", "human", start="acinar", goal="beta", alternatives=("alpha", "delta"),
                      kind="overexpress", drivers=("PDX1", "NEUROG3", "MAFA"))
    result = run_screen(model, cells, labels, case, candidate_tfs(vocab, "human", tfs), high_values=high, n_null=50)
    result.table        # one row per TF: goal_score, rank, the matched null, p and q, role (known driver, control)

What the screen does, and why:

- **Centroids** of the goal and alternative states are the mean unperturbed embeddings of their cells (same pooling
  and layer as the engine); every (start cell, TF) pair is run by the batched engine
  (:func:`gc_lib.tasks.perturb.perturb`), so an overexpressed TF the cell does not express is *inserted* — the
  published perturber dropped such cells, so it could not ask what switching a gene on does.
- **Score**: ``goal_score`` = cos-shift toward the goal minus the mean cos-shift toward the alternatives, averaged
  over the cells the edit applies to (a deletion applies only to cells expressing the TF). TFs are ranked by it.
- **Null and FDR**: every edit moves a cell somewhat, and how much depends on where the gene sits (inserting an
  unexpressed gene at the top pushes the whole cell). Each TF is set against random non-candidate genes of matched
  mean value in the start cells (:mod:`gc_lib.tasks.perturb_stats`: expression bins, ``n_null`` per bin), edited the
  same way in the same cells: empirical one-sided p-value, Benjamini–Hochberg q over the TFs.
- **Combinations** (e.g. Pdx1 + Ngn3 + Mafa, the triple of Zhou et al. 2008) run beside the singles with their own
  matched null; their score is reported, not ranked among the singles.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..corpus.vocab import Vocabulary
from .cell_tokens import CellTokens
from .embedding import encode_cells
from .perturb import perturb, state_centroids
from .perturb_edits import PerturbationSet
from .perturb_stats import expression_bins, matched_null, mean_values, perturbation_pvalues


@dataclass(frozen=True)
class ScreenCase:
    """One reprogramming question: which edit of one TF moves ``start`` cells toward ``goal`` and away from the
    ``alternatives`` (labels of the cells' state column); ``drivers`` are the known answer (symbols), ``controls``
    TFs of unrelated lineages, ``combos`` combinations of symbols run beside the singles."""
    name: str
    species: str
    start: str
    goal: str
    alternatives: tuple[str, ...] = ()
    kind: str = "overexpress"
    drivers: tuple[str, ...] = ()
    controls: tuple[str, ...] = ()
    combos: tuple[tuple[str, ...], ...] = ()
    reference: str = ""

    def __post_init__(self):
        if self.kind not in ("overexpress", "delete"):
            raise ValueError(f"a screen overexpresses or deletes; got kind {self.kind!r}")
        if self.goal == self.start or self.goal in self.alternatives or self.start in self.alternatives:
            raise ValueError(f"{self.name}: start, goal and alternative states must differ")


@dataclass
class ScreenResult:
    """What :func:`run_screen` measured (module docstring)."""
    case: ScreenCase
    table: pd.DataFrame        # per TF: token, gene_id, gene, role, n_cells, goal_score, toward_goal, rank, null, p, q
    cells: pd.DataFrame        # per (start cell, TF): token, gene, cell, goal_score, toward_goal
    genes: pd.DataFrame        # per (TF, moved gene): token, gene, mean_shift, n_cells
    null_cells: pd.DataFrame   # per (start cell, null perturbation): name, cell, goal_score
    combos: pd.DataFrame       # per combination: genes, goal_score, null, p (empty without combinations)
    params: dict = field(default_factory=dict)


def candidate_tfs(vocab: Vocabulary, species: str, tfs: pd.DataFrame) -> pd.DataFrame:
    """The TFs of ``species`` that are tokens of ``vocab``: ``token, gene_id, gene`` (symbol), one row per token.

    ``tfs``: a table ``gene_id, species, symbol`` (:func:`gc_lib.inputs.genes.tf_tokens`); a TF that is not a token
    cannot be edited and is left out.
    """
    mine = tfs[tfs["species"] == species]
    tokens = vocab.genes.reset_index().rename(columns={"index": "token"})
    tokens = tokens[tokens["species"] == species]
    table = mine[["gene_id"]].merge(tokens[["token", "gene_id", "symbol"]], on="gene_id")
    if table.empty:
        raise ValueError(f"none of the {len(mine):,} {species} TFs is a token of this vocabulary")
    table = table.rename(columns={"symbol": "gene"}).drop_duplicates("token")
    return table[["token", "gene_id", "gene"]].sort_values("token").reset_index(drop=True)


def expressed_in(cells: CellTokens, tokens, vocab_size: int) -> np.ndarray:
    """Per token of ``tokens``: the number of ``cells`` that hold it (within their window)."""
    return cells.token_counts(vocab_size)[np.asarray(tokens, dtype=np.int64)]


def run_screen(model, cells: CellTokens, labels, case: ScreenCase, candidates: pd.DataFrame, *,
               high_values: np.ndarray | None, species_tokens: np.ndarray, n_null: int = 50, n_bins: int = 5,
               min_cells: int = 1, layer: int | None = None, pooling: str = "mean", batch_size: int = 64,
               seed: int = 0, device=None, progress: bool = True) -> ScreenResult:
    """Screen every TF of ``candidates`` (:func:`candidate_tfs`) in the ``case.start`` cells (module docstring).

    ``cells``: tokenised cells of every state of the case, ``labels`` their state; ``high_values``: per token the
    value an overexpressed gene takes; ``species_tokens``: every gene token of the species (the null's pool:
    those that are not candidates); ``min_cells``: a deleted TF must be held by at least this many start cells;
    ``n_null=0`` skips the null (ranks only, e.g. for a sensitivity run); ``layer``: measure after that many
    encoder blocks.
    """
    labels = np.asarray(labels).astype(str)
    start_cells = cells.subset(labels == case.start)
    if len(start_cells) == 0:
        raise ValueError(f"{case.name}: no cell is labelled {case.start!r}")
    vocab_size = model.config.vocab_size
    screened = _screened(candidates, start_cells, case, vocab_size, min_cells)
    goal, alternatives = _centroids(model, cells, labels, case, layer=layer, pooling=pooling, batch_size=batch_size,
                                    device=device)
    tested = PerturbationSet.build(screened["token"].tolist(), case.kind, names=screened["gene"].tolist())
    combos, combo_names = _combo_set(case, candidates)
    bins = expression_bins(mean_values(start_cells, vocab_size), np.asarray(species_tokens), n_bins=n_bins)
    parts = [tested] + ([combos] if len(combos) else [])
    null, group = (matched_null(PerturbationSet.concat(parts), bins, n_null=n_null, seed=seed) if n_null
                   else (None, None))
    everything = PerturbationSet.concat(parts + ([null] if null is not None else []))
    started = time.perf_counter()
    result = perturb(model, start_cells, everything, high_values=high_values, pooling=pooling, goal=goal,
                     alternatives=alternatives, batch_size=batch_size, layer=layer, device=device,
                     progress=progress)
    seconds = time.perf_counter() - started
    n_tested, n_combos = len(tested), len(combos)
    kept = result.cells[result.cells["perturbation"] < n_tested + n_combos]
    null_cells = result.cells[result.cells["perturbation"] >= n_tested + n_combos]
    significance = (perturbation_pvalues(kept, null_cells, group, "goal_score", alternative="greater")
                    if null is not None else None)
    table = _tf_table(screened, kept, significance, case)
    params = {"case": case.name, "start_cells": len(start_cells), "candidates": len(candidates),
              "screened": len(screened), "null_perturbations": len(null) if null is not None else 0,
              "pairs": len(result.cells), "seconds": round(seconds, 2),
              "pairs_per_second": round(len(result.cells) / max(seconds, 1e-9), 1), **result.params}
    return ScreenResult(case, table, _per_cell(kept, screened, n_tested), _moved_genes(result.genes, screened),
                        null_cells[["name", "cell", "goal_score"]].reset_index(drop=True),
                        _combo_table(kept, significance, combo_names, n_tested), params)


def _screened(candidates: pd.DataFrame, start_cells: CellTokens, case: ScreenCase, vocab_size: int,
              min_cells: int) -> pd.DataFrame:
    """The candidates the case can edit: all of them for an overexpression, those held by ``min_cells`` start
    cells for a deletion (it changes nothing in a cell without the gene)."""
    held = expressed_in(start_cells, candidates["token"], vocab_size)
    screened = candidates.assign(start_cells_expressing=held)
    if case.kind == "delete":
        screened = screened[held >= max(min_cells, 1)]
    if screened.empty:
        raise ValueError(f"{case.name}: no candidate TF is held by {min_cells} or more {case.start!r} cells")
    return screened.reset_index(drop=True)


def _centroids(model, cells: CellTokens, labels: np.ndarray, case: ScreenCase, **encode) -> tuple:
    states = [case.goal, *case.alternatives]
    chosen = np.isin(labels, states)
    embeddings, _, _ = encode_cells(model, cells.subset(chosen), gene_embeddings=False, **encode)
    centroid = state_centroids(embeddings, labels[chosen], states)
    return centroid[case.goal], {name: centroid[name] for name in case.alternatives}


def _combo_set(case: ScreenCase, candidates: pd.DataFrame) -> tuple[PerturbationSet, list[str]]:
    if not case.combos:
        return PerturbationSet(np.zeros((0, 1), np.int64), np.zeros(0, np.int64), np.zeros(0), []), []
    token_of = _token_by_symbol(candidates)
    missing = sorted({g for combo in case.combos for g in combo if g.upper() not in token_of})
    if missing:
        raise ValueError(f"{case.name}: combination genes {missing} are not candidate TFs of {case.species}")
    names = ["+".join(combo) for combo in case.combos]
    tokens = [[token_of[g.upper()] for g in combo] for combo in case.combos]
    return PerturbationSet.build(tokens, case.kind, names=names), names


def _token_by_symbol(candidates: pd.DataFrame) -> dict[str, int]:
    return dict(zip(candidates["gene"].str.upper(), candidates["token"]))


def _tf_table(screened: pd.DataFrame, kept: pd.DataFrame, significance, case: ScreenCase) -> pd.DataFrame:
    """One row per screened TF, best first: its mean scores over its cells, rank, null, p, q and role."""
    n = len(screened)
    per_tf = kept[kept["perturbation"] < n].groupby("perturbation")
    table = screened.copy()
    table["n_cells"] = per_tf.size().reindex(range(n), fill_value=0).to_numpy()
    table[["goal_score", "toward_goal"]] = per_tf[["goal_score", "toward_goal"]].mean().reindex(range(n)).to_numpy()
    if significance is not None:
        sig = significance.set_index("perturbation").reindex(range(n))
        table["null_mean"], table["null_sd"] = sig["null_mean"].to_numpy(), sig["null_sd"].to_numpy()
        table["z"] = (table["goal_score"] - table["null_mean"]) / table["null_sd"]
        table["p_value"], table["q_value"] = sig["p_value"].to_numpy(), sig["q_value"].to_numpy()
    table["rank"] = table["goal_score"].rank(ascending=False, method="average")
    table["role"] = roles(table["gene"], case)
    return table.sort_values("rank", kind="stable").reset_index(drop=True)


def roles(genes: pd.Series, case: ScreenCase) -> np.ndarray:
    """``"known driver"``, ``"negative control"`` or ``""`` per gene symbol (case-insensitive)."""
    upper = genes.astype(str).str.upper()
    role = np.full(len(genes), "", dtype=object)
    role[upper.isin([g.upper() for g in case.controls]).to_numpy()] = "negative control"
    role[upper.isin([g.upper() for g in case.drivers]).to_numpy()] = "known driver"
    return role


def _per_cell(kept: pd.DataFrame, screened: pd.DataFrame, n_tested: int) -> pd.DataFrame:
    singles = kept[kept["perturbation"] < n_tested]
    return pd.DataFrame({"token": screened["token"].to_numpy()[singles["perturbation"]],
                         "gene": screened["gene"].to_numpy()[singles["perturbation"]],
                         "cell": singles["cell"].to_numpy(), "goal_score": singles["goal_score"].to_numpy(),
                         "toward_goal": singles["toward_goal"].to_numpy()})


def _moved_genes(genes: pd.DataFrame, screened: pd.DataFrame) -> pd.DataFrame:
    """Per screened TF, the genes whose contextual states it moved (the engine's gene table, by TF token)."""
    mine = genes[genes["perturbation"] < len(screened)]
    return pd.DataFrame({"token": screened["token"].to_numpy()[mine["perturbation"]],
                         "moved_token": mine["token"].to_numpy(), "mean_shift": mine["mean_shift"].to_numpy(),
                         "n_cells": mine["n_cells"].to_numpy()})


def _combo_table(kept: pd.DataFrame, significance, names: list[str], n_tested: int) -> pd.DataFrame:
    columns = ["combination", "n_cells", "goal_score", "null_mean", "null_sd", "p_value"]
    if not names:
        return pd.DataFrame(columns=columns)
    index = range(n_tested, n_tested + len(names))
    mine = kept[kept["perturbation"] >= n_tested].groupby("perturbation")["goal_score"]
    table = pd.DataFrame({"combination": names, "n_cells": mine.size().reindex(index, fill_value=0).to_numpy(),
                          "goal_score": mine.mean().reindex(index).to_numpy()})
    sig = significance.set_index("perturbation").reindex(index) if significance is not None else None
    for column in ("null_mean", "null_sd", "p_value"):
        table[column] = sig[column].to_numpy() if sig is not None else np.nan
    return table[columns]


def sample_cells(labels, counts: dict[str, int | None], *, seed: int = 0) -> np.ndarray:
    """Sorted row indices of up to ``counts[state]`` random cells of each state (``None``: all of them); a state
    with no cell raises ``ValueError`` naming it."""
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    chosen = []
    for state, n in counts.items():
        rows = np.flatnonzero(labels == str(state))
        if not len(rows):
            raise ValueError(f"no cell is labelled {state!r}; labels present: {sorted(set(labels))[:12]}")
        chosen.append(rows if n is None or n >= len(rows) else rng.choice(rows, size=n, replace=False))
    return np.sort(np.unique(np.concatenate(chosen)))
