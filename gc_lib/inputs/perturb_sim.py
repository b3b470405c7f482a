"""Simulated Perturb-seq in GEARS's format: SERGIO knock-outs on a held-out sub-network of the TF→target graph.

Notebook 07 compares perturbation-outcome predictors (GEARS, linear models). Offline there is no real Perturb-seq, so
the ci/local profiles use SIMULATED DATA from SERGIO (Dibaeinia & Sinha, *Cell Systems* 2020; run by its Rust port
``sergio-rs``, GPL-3, an optional dependency: ``pip install 'gc_lib[sim]'``). To keep the simulation from leaking
into the model, pass edges the model's priors never saw: ``data/02_prior_knowledge/heldout_edges.parquet``
(notebook 02; its ``holdout == "tf"`` rows are TFs whose every edge was kept out of every prior).

:func:`simulation_network` picks a connected, acyclic sub-network and gives it SERGIO's parameters;
:func:`simulate_perturb_seq` simulates control cells and single and double knock-outs on it
(:mod:`gc_lib.inputs.sergio_knockout` says how a knock-out is done and why not with sergio_rs's own
``ko_perturbation``) and returns counts as GEARS reads them: ``obs["condition"]`` is ``"ctrl"``, ``"A+ctrl"`` or
``"A+B"`` (gene symbols, a double's in alphabetical order), ``obs["cell_type"]``, ``obs["condition_name"]``
(``"<cell_type>_<condition>_1"`` for control, ``..._1+1`` otherwise, as GEARS writes it), ``var["gene_name"]``.
"""
from __future__ import annotations

import importlib.metadata
import itertools

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import sergio_knockout as ko

CONTROL = "ctrl"
#: SERGIO v2's parametrisation of a network without weights (``grn_from_networkx``): 3 in 4 edges activate,
#: |K| uniform in [1, 5], Hill coefficient 2
ACTIVATION_PROBABILITY = 0.75
STRENGTH_RANGE = (1.0, 5.0)
HILL_COEFFICIENT = 2
SIMULATED_NOTE = ("SIMULATED DATA: SERGIO (sergio_rs) knock-outs on a held-out TF→target sub-network; not a "
                  "measurement")
_SYMBOL_COLUMNS = ("tf_symbol", "target_symbol")


def simulation_network(edges: pd.DataFrame, *, max_genes: int = 300, n_regulators: int | None = None,
                       max_regulators: int = 3, seed: int = 0) -> pd.DataFrame:
    """A connected, acyclic sub-network of TF→target ``edges`` (columns ``tf``, ``target``: Ensembl IDs) for SERGIO.

    Regulators: the ``n_regulators`` (default ``max_genes // 5``) TFs of highest out-degree, taken in that order but
    only when they touch the ones already taken (a regulator or target in common). Targets, up to ``max_genes``
    genes in all: first those shared by several chosen regulators (most shared first, at most a quarter of the
    room), then one target per regulator in turn (random order, ``seed``) so that every regulator keeps some. Of the
    edges among the chosen genes, each target keeps at most ``max_regulators`` (at random): hub TFs regulate most
    genes, and a sparser network keeps single knock-outs visible and the simulation fast. Edges from higher-ranked
    regulators are then kept first and one that would close a cycle is dropped; the largest connected piece is
    returned. Signs come from a ``sign``/``mor`` column (negative = repression) or OmniPath's
    ``is_stimulation``/``is_inhibition`` where present, else are random (the held-out table has none).

    Returns ``tf, target, K`` (signed SERGIO interaction strength), ``hill`` and any ``tf_symbol, target_symbol,
    holdout`` columns of ``edges``, sorted by ``tf, target``.
    """
    table = _clean_edges(edges)
    if max_genes < 2:
        raise ValueError(f"max_genes must be at least 2 (one regulator and one target), got {max_genes}")
    rng = np.random.default_rng(seed)
    out_degree = table.groupby("tf").size()
    ranked = sorted(out_degree.index, key=lambda tf: (-out_degree[tf], tf))
    regulators = _connected_regulators(table, ranked, n_regulators or max(1, max_genes // 5))
    genes = _choose_genes(table, regulators, max_genes, rng)
    inside = table[table["tf"].isin(genes) & table["target"].isin(genes)]
    inside = inside.iloc[rng.permutation(len(inside))].groupby("target").head(max_regulators)
    rank = {tf: i for i, tf in enumerate(ranked)}
    kept = _largest_component(_acyclic_edges(inside, rank))
    return _parametrise(kept.sort_values(["tf", "target"]).reset_index(drop=True), rng)


def _clean_edges(edges: pd.DataFrame) -> pd.DataFrame:
    missing = {"tf", "target"} - set(edges.columns)
    if missing:
        raise ValueError(f"the edge table lacks column(s) {sorted(missing)}; expected tf and target (Ensembl IDs)")
    table = edges.dropna(subset=["tf", "target"]).astype({"tf": str, "target": str})
    table = table[table["tf"] != table["target"]].drop_duplicates(["tf", "target"])
    if table.empty:
        raise ValueError("the edge table has no TF→target edges (after dropping self-loops and missing IDs); "
                         "cannot build a network")
    return table.reset_index(drop=True)


def _connected_regulators(table: pd.DataFrame, ranked: list[str], n_regulators: int) -> list[str]:
    targets = table.groupby("tf")["target"].apply(set).to_dict()
    chosen, touched = [ranked[0]], {ranked[0]} | targets[ranked[0]]
    added = True
    while added and len(chosen) < n_regulators:
        added = False
        for tf in ranked:
            if tf not in chosen and (tf in touched or targets[tf] & touched):
                chosen.append(tf)
                touched |= {tf} | targets[tf]
                added = True
                break
    return chosen


def _choose_genes(table: pd.DataFrame, regulators: list[str], max_genes: int, rng) -> list[str]:
    genes = list(regulators[:max_genes - 1])
    own = table[table["tf"].isin(genes) & ~table["target"].isin(genes)]
    sharing = own.groupby("target").size()
    shared = sharing[sharing > 1]
    shared = shared.iloc[np.lexsort((rng.random(len(shared)), -shared.to_numpy()))]
    genes += shared.index[:(max_genes - len(genes)) // 4].tolist()
    queues = {tf: list(rng.permutation(sorted(rows["target"]))) for tf, rows in own.groupby("tf")}
    taken = set(genes)
    while len(genes) < max_genes and any(queues.values()):
        for tf in genes[:len(regulators)]:
            queue = queues.get(tf, [])
            while queue and queue[0] in taken:
                queue.pop(0)
            if queue and len(genes) < max_genes:
                genes.append(queue.pop(0))
                taken.add(genes[-1])
    return genes


def _acyclic_edges(edges: pd.DataFrame, rank: dict[str, int]) -> pd.DataFrame:
    """Edges added from the best-ranked regulator down; one whose target already reaches its TF is dropped."""
    order = sorted(range(len(edges)), key=lambda i: (rank[edges["tf"].iat[i]], edges["target"].iat[i]))
    successors: dict[str, list[str]] = {}
    keep = []
    for i in order:
        tf, target = edges["tf"].iat[i], edges["target"].iat[i]
        if not _reaches(successors, target, tf):
            successors.setdefault(tf, []).append(target)
            keep.append(i)
    return edges.iloc[sorted(keep)]


def _reaches(successors: dict[str, list[str]], start: str, goal: str) -> bool:
    stack, seen = [start], {start}
    while stack:
        gene = stack.pop()
        if gene == goal:
            return True
        for nxt in successors.get(gene, []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def _largest_component(edges: pd.DataFrame) -> pd.DataFrame:
    parent: dict[str, str] = {}

    def root(gene: str) -> str:
        while parent.setdefault(gene, gene) != gene:
            parent[gene] = parent[parent[gene]]
            gene = parent[gene]
        return gene

    for tf, target in zip(edges["tf"], edges["target"]):
        parent[root(tf)] = root(target)
    component = edges["tf"].map(root)
    sizes = pd.Series([root(g) for g in parent]).value_counts()
    biggest = min(sizes.index[sizes == sizes.max()])
    return edges[component == biggest]


def _parametrise(edges: pd.DataFrame, rng) -> pd.DataFrame:
    random_sign = np.where(rng.random(len(edges)) < ACTIVATION_PROBABILITY, 1.0, -1.0)
    strength = rng.uniform(*STRENGTH_RANGE, len(edges))
    known = _known_signs(edges)
    sign = np.where(np.isnan(known), random_sign, known)
    out = edges[["tf", "target"]].copy()
    out["K"] = sign * strength
    out["hill"] = HILL_COEFFICIENT
    for column in (*_SYMBOL_COLUMNS, "holdout"):
        if column in edges:
            out[column] = edges[column].to_numpy()
    return out


def _known_signs(edges: pd.DataFrame) -> np.ndarray:
    """+1/-1 where the table says whether an edge activates or represses, NaN where it does not."""
    for column in ("sign", "mor"):
        if column in edges:
            value = pd.to_numeric(edges[column], errors="coerce").to_numpy(dtype=float)
            return np.where(value > 0, 1.0, np.where(value < 0, -1.0, np.nan))
    if {"is_stimulation", "is_inhibition"} <= set(edges.columns):
        stimulates = edges["is_stimulation"].fillna(False).astype(bool).to_numpy()
        inhibits = edges["is_inhibition"].fillna(False).astype(bool).to_numpy()
        return np.where(stimulates & ~inhibits, 1.0, np.where(inhibits & ~stimulates, -1.0, np.nan))
    return np.full(len(edges), np.nan)


def simulate_perturb_seq(network: pd.DataFrame, *, symbols: dict | None = None, n_control: int,
                         cells_per_condition: int, singles: list[str] | int, doubles: list[tuple] | int,
                         seed: int = 0, noise: str | None = "DS3", min_counts: int = 1,
                         cell_type: str = "simulated") -> AnnData:
    """Control cells plus single and double knock-outs simulated by SERGIO on ``network``, as GEARS reads them.

    ``network``: :func:`simulation_network`'s table (``tf, target, K, hill``). ``symbols``: Ensembl ID → symbol;
    by default the network's ``tf_symbol``/``target_symbol`` columns, else the HGNC table; a gene without a unique
    symbol is named by its Ensembl ID. ``singles``/``doubles``: genes (symbols or Ensembl IDs) and pairs to knock
    out, or how many to draw (``seed``) among genes with targets; drawn doubles mix pairs of two, one and no
    single-perturbed genes (a third each), so GEARS's simulation split finds combos with 0/1/2 genes seen.
    ``noise``: a SERGIO technical-noise setting (``"DS1"`` … ``"DS14"``, library size and dropout as in that data
    set of the SERGIO paper) or None for Poisson counts of the clean expression. The default, DS3, gives ~400 UMIs
    per cell over 300 genes (~1.3 per gene, ~80% zeros), near the per-gene depth of Norman et al.'s screen. SERGIO's
    dropout empties a few low-library cells (~0.5% with DS3), which would break per-cell normalisation: cells with
    fewer than ``min_counts`` counts are dropped, so a condition may keep slightly fewer cells than asked for. Like
    any QC filter this selects cells (on a tiny network, where most cells have few counts, it biases means upward;
    pass 0 to keep every cell).

    ``X`` holds the integer counts (CSR float32); ``obs["knocked_out"]`` the knocked-out Ensembl IDs (``+``-joined);
    ``uns["gc_lib"]["simulation"]`` describes the run (sergio_rs version, network, seed, knocked-out genes).
    """
    missing = {"tf", "target", "K", "hill"} - set(network.columns)
    if missing or network.empty:
        raise ValueError(f"the network has no edges or lacks column(s) {sorted(missing)}; build it with "
                         "simulation_network")
    if min(n_control, cells_per_condition) < 1:
        raise ValueError(f"n_control and cells_per_condition must be at least 1, got {n_control} and "
                         f"{cells_per_condition}")
    order = ko.topological_order(network)
    genes = sorted(order)
    names = _gene_names(network, genes, symbols)
    single_ids, double_ids = _choose_perturbations(network, names, singles, doubles, seed)
    conditions = [(CONTROL, (), n_control)]
    conditions += [(f"{names[g]}+{CONTROL}", (g,), cells_per_condition) for g in single_ids]
    conditions += [("+".join(sorted((names[a], names[b]))), (a, b), cells_per_condition) for a, b in double_ids]
    # one seed each for the MR levels, the technical noise and every condition's cells
    seeds = np.random.SeedSequence(seed).generate_state(len(conditions) + 2, dtype=np.uint32).tolist()
    decays = ko.master_regulator_decays(network, np.random.default_rng(seeds[0]))
    rows = pd.Index(order).get_indexer(genes)
    clean = [ko.simulate_condition(network, order, decays, set(knocked), n, seeds[2 + i])[rows]
             for i, (_, knocked, n) in enumerate(conditions)]
    counts = ko.to_counts(np.concatenate(clean, axis=1), noise, seeds[1]).T
    adata = _assemble(counts, conditions, genes, names, cell_type)
    kept = np.asarray(adata.X.sum(axis=1)).ravel() >= min_counts
    adata = adata[kept].copy()
    adata.uns["gc_lib"] = {"value_kind": "raw counts (SERGIO technical noise → UMI counts)",
                           "simulation": _description(network, conditions, decays, seed, noise, min_counts, kept)}
    return adata


def _description(network, conditions, decays, seed, noise, min_counts, kept) -> dict:
    """What ``uns["gc_lib"]["simulation"]`` says about a run (h5ad-writable: strings, numbers and lists)."""
    return {"note": SIMULATED_NOTE, "simulator": "sergio_rs",
            "sergio_rs_version": importlib.metadata.version("sergio-rs"), "seed": int(seed), "noise": str(noise),
            "min_counts": int(min_counts), "cells_dropped": int((~kept).sum()),
            "n_genes": len(set(network["tf"]) | set(network["target"])), "n_edges": int(len(network)),
            "n_master_regulators": len(decays), "knockout": "gene held at 0, half-responses fixed at control "
            "(gc_lib.inputs.sergio_knockout)",
            "conditions": [name for name, _, _ in conditions],
            "knocked_out": ["+".join(knocked) for _, knocked, _ in conditions],
            "network": {"tf": network["tf"].tolist(), "target": network["target"].tolist(),
                        "K": network["K"].astype(float).tolist(), "hill": network["hill"].astype(int).tolist()}}


def _gene_names(network: pd.DataFrame, genes: list[str], symbols: dict | None) -> dict[str, str]:
    """Ensembl ID → the name used in conditions: its symbol, or the ID where the symbol is missing, shared or
    unusable in a GEARS condition (contains ``+`` or ``_``, or is ``ctrl``)."""
    if symbols is None and set(_SYMBOL_COLUMNS) <= set(network.columns):
        pairs = pd.concat([network[["tf", "tf_symbol"]].set_axis(["id", "symbol"], axis=1),
                           network[["target", "target_symbol"]].set_axis(["id", "symbol"], axis=1)])
        symbols = pairs.dropna().drop_duplicates("id").set_index("id")["symbol"].to_dict()
    elif symbols is None:
        from .genes import gene_table

        symbols = gene_table("human").set_index("ensembl_id")["symbol"].to_dict()
    proposed = pd.Series({g: symbols.get(g) if isinstance(symbols.get(g), str) else "" for g in genes})
    usable = (proposed != "") & ~proposed.str.contains(r"[+_]") & (proposed != CONTROL)
    usable &= ~proposed.duplicated(keep=False) & ~proposed.isin(genes)
    return proposed.where(usable, proposed.index.to_series()).to_dict()


def _choose_perturbations(network, names, singles, doubles, seed) -> tuple[list[str], list[tuple[str, str]]]:
    lookup = {**{g: g for g in names}, **{name: g for g, name in names.items()}}
    candidates = sorted(set(network["tf"]))
    rng = np.random.default_rng(seed)
    if isinstance(singles, int):
        if singles > len(candidates):
            raise ValueError(f"asked for {singles} single knock-outs but only {len(candidates)} genes have targets")
        single_ids = sorted(rng.choice(candidates, singles, replace=False).tolist())
    else:
        single_ids = _resolve(singles, lookup, "singles")
        if len(set(single_ids)) < len(single_ids):
            raise ValueError(f"singles names a gene twice: {list(singles)}")
    if isinstance(doubles, int):
        return single_ids, _draw_doubles(candidates, single_ids, doubles, rng)
    pairs = [tuple(_resolve(list(pair), lookup, "doubles")) for pair in doubles]
    if any(len(pair) != 2 or pair[0] == pair[1] for pair in pairs):
        raise ValueError(f"each double must name two different genes; got {list(doubles)}")
    return single_ids, [tuple(sorted(pair)) for pair in pairs]


def _resolve(requested: list, lookup: dict[str, str], what: str) -> list[str]:
    unknown = [gene for gene in requested if gene not in lookup]
    if unknown:
        raise ValueError(f"{what}: gene(s) {unknown} are not in the simulation network (give symbols or Ensembl IDs "
                         "of network genes)")
    return [lookup[gene] for gene in requested]


def _draw_doubles(candidates: list[str], seen: list[str], n_doubles: int, rng) -> list[tuple[str, str]]:
    """Pairs with two, one and no members among the single knock-outs (a third each; a short group's share goes
    to the next)."""
    unseen = [g for g in candidates if g not in set(seen)]
    groups = [list(itertools.combinations(seen, 2)), list(itertools.product(seen, unseen)),
              list(itertools.combinations(unseen, 2))]
    wanted, chosen = [n_doubles - 2 * (n_doubles // 3), n_doubles // 3, n_doubles // 3], []
    carry = 0
    for group, n in zip(groups, wanted):
        take = min(n + carry, len(group))
        carry = n + carry - take
        chosen += [tuple(sorted(group[i])) for i in sorted(rng.choice(len(group), take, replace=False))]
    if carry:
        raise ValueError(f"asked for {n_doubles} double knock-outs but only {n_doubles - carry} distinct pairs of "
                         "genes with targets exist")
    return chosen


def _assemble(counts: np.ndarray, conditions, genes: list[str], names: dict[str, str], cell_type: str) -> AnnData:
    labels = np.repeat([name for name, _, _ in conditions], [n for _, _, n in conditions])
    knocked = np.repeat(["+".join(k) for _, k, _ in conditions], [n for _, _, n in conditions])
    dose = np.where(labels == CONTROL, "1", "1+1")
    obs = pd.DataFrame({"condition": labels, "cell_type": cell_type,
                        "condition_name": [f"{cell_type}_{c}_{d}" for c, d in zip(labels, dose)],
                        "knocked_out": knocked}, index=[f"cell{i:06d}" for i in range(len(labels))])
    var = pd.DataFrame({"gene_name": [names[g] for g in genes]}, index=pd.Index(genes, name="ensembl_id"))
    return AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
