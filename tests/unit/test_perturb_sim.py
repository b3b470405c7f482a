"""gc_lib.inputs.perturb_sim / sergio_knockout: SERGIO-simulated Perturb-seq in GEARS's format.

The network tests use a synthetic TF→target table (hubs, cycles, self-loops, duplicates; Ensembl-shaped IDs) so they
need neither notebook 02's held-out edges nor sergio_rs; the simulation tests need sergio_rs (``gc_lib[sim]``) and
run on small networks with ``noise=None`` (Poisson counts of SERGIO's clean expression) where an effect is measured.
"""
import importlib.util
import re
import sys

import numpy as np
import pandas as pd
import pytest

from gc_lib.inputs import sergio_knockout as ko
from gc_lib.inputs.perturb_sim import CONTROL, SIMULATED_NOTE, simulate_perturb_seq, simulation_network

needs_sergio = pytest.mark.skipif(importlib.util.find_spec("sergio_rs") is None,
                                  reason="sergio-rs not installed (pip install 'gc_lib[sim]')")
GEARS_CONDITION = re.compile(r"^(ctrl|[^+]+\+ctrl|[^+]+\+[^+]+)$")


def gene_id(i: int) -> str:
    return f"ENSG{i:011d}"


def synthetic_edges(seed: int = 0, n_tfs: int = 30, n_genes: int = 200) -> pd.DataFrame:
    """TF i regulates ~60/(i+1)+3 random genes (a few hubs, many small TFs); TF→TF edges make cycles."""
    rng = np.random.default_rng(seed)
    rows = []
    for tf in range(n_tfs):
        for target in rng.choice(n_genes, 60 // (tf + 1) + 3, replace=False):
            rows.append((gene_id(tf), gene_id(int(target))))
    rows += [(gene_id(1), gene_id(0)), (gene_id(0), gene_id(1)), (gene_id(2), gene_id(2)), rows[0]]
    edges = pd.DataFrame(rows, columns=["tf", "target"])
    edges["tf_symbol"] = "G" + edges["tf"].str[-3:].str.lstrip("0").replace("", "0")
    edges["target_symbol"] = "G" + edges["target"].str[-3:].str.lstrip("0").replace("", "0")
    edges["holdout"] = "tf"
    return edges


def is_acyclic(network: pd.DataFrame) -> bool:
    try:
        ko.topological_order(network)
    except ValueError:
        return False
    return True


def is_connected(network: pd.DataFrame) -> bool:
    neighbours: dict[str, set[str]] = {}
    for tf, target in zip(network["tf"], network["target"]):
        neighbours.setdefault(tf, set()).add(target)
        neighbours.setdefault(target, set()).add(tf)
    start = next(iter(neighbours))
    seen, stack = {start}, [start]
    while stack:
        for nxt in neighbours[stack.pop()] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return len(seen) == len(neighbours)


def downstream(network: pd.DataFrame, gene: str) -> set[str]:
    targets = network.groupby("tf")["target"].apply(set).to_dict()
    seen, stack = set(), [gene]
    while stack:
        for nxt in targets.get(stack.pop(), set()) - seen:
            seen.add(nxt)
            stack.append(nxt)
    return seen


def condition_means(adata) -> pd.DataFrame:
    """Mean count per condition (rows) and gene (columns, Ensembl IDs)."""
    frame = pd.DataFrame(adata.X.toarray(), columns=adata.var_names)
    return frame.groupby(adata.obs["condition"].to_numpy()).mean()


# --- the network -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_genes", [12, 40, 80])
def test_network_is_acyclic_connected_and_capped(max_genes):
    network = simulation_network(synthetic_edges(), max_genes=max_genes, seed=1)
    genes = set(network["tf"]) | set(network["target"])
    assert 2 <= len(genes) <= max_genes
    assert len(genes) >= max_genes // 2  # the cap is approached, not just respected
    assert is_acyclic(network) and is_connected(network)
    assert not (network["tf"] == network["target"]).any()
    assert not network.duplicated(["tf", "target"]).any()
    assert network.groupby("target").size().max() <= 3
    assert network["K"].abs().between(1, 5).all() and (network["hill"] == 2).all()
    assert {"tf_symbol", "target_symbol", "holdout"} <= set(network.columns)


def test_network_prefers_hub_regulators_and_mixes_signs():
    network = simulation_network(synthetic_edges(), max_genes=80, seed=0)
    assert gene_id(0) in set(network["tf"])  # the biggest hub regulates in the sub-network
    repressing = (network["K"] < 0).mean()
    assert 0.05 < repressing < 0.5  # SERGIO's 1-in-4 repressors, drawn at random


def test_network_is_deterministic_for_a_seed():
    edges = synthetic_edges()
    first = simulation_network(edges, max_genes=50, seed=3)
    pd.testing.assert_frame_equal(first, simulation_network(edges, max_genes=50, seed=3))
    other = simulation_network(edges, max_genes=50, seed=4)
    assert not (first.shape == other.shape and np.allclose(first["K"], other["K"]))


def test_network_takes_signs_from_the_table():
    edges = synthetic_edges()
    edges["sign"] = np.where(edges["target"].str[-1].astype(int) % 2 == 0, 1, -1)
    network = simulation_network(edges, max_genes=50, seed=0)
    expected = np.where(network["target"].str[-1].astype(int) % 2 == 0, 1, -1)
    assert (np.sign(network["K"]) == expected).all()


def test_network_errors_name_the_problem():
    with pytest.raises(ValueError, match="no TF→target edges"):
        simulation_network(pd.DataFrame({"tf": [gene_id(1)], "target": [gene_id(1)]}))
    with pytest.raises(ValueError, match="lacks column"):
        simulation_network(pd.DataFrame({"regulator": [gene_id(1)], "target": [gene_id(2)]}))
    with pytest.raises(ValueError, match="max_genes"):
        simulation_network(synthetic_edges(), max_genes=1)
    cyclic = pd.DataFrame({"tf": ["a", "b"], "target": ["b", "a"], "K": [1.0, 1.0], "hill": [2, 2]})
    with pytest.raises(ValueError, match="cycle"):
        ko.topological_order(cyclic)


# --- the knock-out model (no sergio_rs needed) -------------------------------------------------------------------


def test_knockout_ratios_hold_half_responses_at_control():
    # A activates B, A represses C, B activates D, E activates D
    network = pd.DataFrame({"tf": ["A", "A", "B", "E"], "target": ["B", "C", "D", "D"],
                            "K": [2.0, -2.0, 3.0, 1.0], "hill": [2, 2, 2, 2]})
    order = ko.topological_order(network)
    ratio = ko.knockout_ratios(network, order, {"A"})
    assert ratio["A"] == 0 and ratio["B"] == 0  # B's only regulator is gone
    assert ratio["C"] == pytest.approx(2.0)  # de-repressed: |K| instead of |K|/2
    assert ratio["D"] == pytest.approx(1.0 * 0.5 / (0.5 * 4.0))  # only E's term is left
    assert ratio["E"] == 1.0
    strength, hill = ko.condition_interactions(network, ratio)
    assert strength[3] == 1.0 and hill[3] == 2  # an untouched regulator's edge is unchanged
    assert strength[0] == 0 and strength[1] == -4.0 and hill[0] == hill[1] == 0  # constant: 0 and |K|
    untouched = ko.condition_interactions(network, ko.knockout_ratios(network, order, set()))
    assert np.array_equal(untouched[0], network["K"]) and np.array_equal(untouched[1], network["hill"])


def test_missing_sergio_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sergio_rs", None)
    with pytest.raises(ImportError, match=r"gc_lib\[sim\]"):
        ko.import_sergio()


# --- the simulation -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def network():
    return simulation_network(synthetic_edges(), max_genes=40, seed=0)


@pytest.fixture(scope="module")
def screen(network):
    return simulate_perturb_seq(network, n_control=200, cells_per_condition=150, singles=4, doubles=6, seed=0,
                                noise=None)


@needs_sergio
def test_conditions_follow_gears_format(screen, network):
    obs, names = screen.obs, set(screen.var["gene_name"])
    assert set(obs["condition"]).issuperset({CONTROL}) and obs["condition"].map(GEARS_CONDITION.match).all()
    for condition in set(obs["condition"]) - {CONTROL}:
        first, second = condition.split("+")
        assert first in names and (second == CONTROL or (second in names and first < second))
    dose = np.where(obs["condition"] == CONTROL, "1", "1+1")
    assert (obs["condition_name"] == obs["cell_type"] + "_" + obs["condition"] + "_" + dose).all()
    assert (obs["cell_type"] == "simulated").all()
    assert screen.var_names.str.fullmatch(r"ENSG\d{11}").all()
    symbol = dict(zip(network["tf"], network["tf_symbol"])) | dict(zip(network["target"], network["target_symbol"]))
    assert list(screen.var["gene_name"]) == [symbol[g] for g in screen.var_names]
    assert obs["condition"].value_counts()[CONTROL] == 200
    assert (obs["condition"].value_counts().drop(CONTROL) == 150).all()


@needs_sergio
def test_uns_describes_the_simulation(screen, network):
    description = screen.uns["gc_lib"]["simulation"]
    assert description["note"] == SIMULATED_NOTE and "SIMULATED DATA" in description["note"]
    assert description["sergio_rs_version"] >= "0.2.3" and description["seed"] == 0
    assert description["n_edges"] == len(network) and description["conditions"][0] == CONTROL
    knocked = dict(zip(description["conditions"], description["knocked_out"]))
    for condition, genes in zip(screen.obs["condition"], screen.obs["knocked_out"]):
        assert knocked[condition] == genes


@needs_sergio
def test_drawn_doubles_mix_seen_and_unseen_genes(screen):
    conditions = set(screen.obs["condition"])
    singles = {c.split("+")[0] for c in conditions if c.endswith(f"+{CONTROL}")}
    doubles = [c.split("+") for c in conditions - {CONTROL} if not c.endswith(f"+{CONTROL}")]
    assert len(singles) == 4 and len(doubles) == 6
    assert {sum(gene in singles for gene in pair) for pair in doubles} == {0, 1, 2}


@needs_sergio
def test_counts_are_nonnegative_integers(network):
    adata = simulate_perturb_seq(network, n_control=60, cells_per_condition=30, singles=2, doubles=1, seed=2)
    counts = adata.X.toarray()
    assert adata.uns["gc_lib"]["simulation"]["noise"] == "DS3"
    assert (counts >= 0).all() and np.array_equal(counts, np.round(counts)) and counts.sum() > 0
    assert (counts.sum(axis=1) >= 1).all()  # min_counts: SERGIO's dropout empties a few cells; they are dropped


@needs_sergio
def test_simulation_is_deterministic_for_a_seed(network):
    def run(seed):
        return simulate_perturb_seq(network, n_control=40, cells_per_condition=20, singles=2, doubles=1, seed=seed)
    first, again, other = run(5), run(5), run(6)
    assert np.array_equal(first.X.toarray(), again.X.toarray())
    assert list(first.obs["condition"]) == list(again.obs["condition"])
    assert not np.array_equal(first.X.toarray(), other.X[:first.n_obs].toarray())


@needs_sergio
def test_knocked_out_gene_is_silenced(screen):
    means = condition_means(screen)
    for condition, genes in zip(screen.obs["condition"], screen.obs["knocked_out"]):
        for gene in filter(None, genes.split("+")):
            assert means.loc[condition, gene] <= 0.05 * means.loc[CONTROL, gene] + 1e-9


@needs_sergio
def test_knockout_moves_direct_targets_but_not_unrelated_genes(screen, network):
    counts = pd.DataFrame(screen.X.toarray(), columns=screen.var_names)
    condition = screen.obs["condition"].to_numpy()
    control = counts[condition == CONTROL]
    for name in {c for c in condition if c.endswith(f"+{CONTROL}")}:
        knocked = counts[condition == name]
        gene = screen.obs.loc[condition == name, "knocked_out"].iloc[0]
        shift = knocked.mean() - control.mean()
        t = shift / np.sqrt(knocked.var() / len(knocked) + control.var() / len(control) + 1e-12)  # Welch
        direct = list(set(network.loc[network["tf"] == gene, "target"]))
        best = t[direct].abs().idxmax()
        assert abs(t[best]) > 6 and abs(shift[best]) > 0.2 * control[best].mean(), name
        unrelated = [g for g in screen.var_names if g not in downstream(network, gene) | {gene}]
        assert len(unrelated) > 10 and t[unrelated].abs().max() < 4.5, name  # sampling noise only


@needs_sergio
def test_repressor_knockout_derepresses_and_activator_knockout_silences():
    # A activates B and represses C; D activates E (unrelated); the half-responses stay at their control values
    network = pd.DataFrame({"tf": ["A", "A", "D"], "target": ["B", "C", "E"], "K": [4.0, -4.0, 4.0],
                            "hill": [2, 2, 2]})
    adata = simulate_perturb_seq(network, symbols={g: g for g in "ABCDE"}, n_control=400, cells_per_condition=400,
                                 singles=["A"], doubles=0, seed=0, noise=None, min_counts=0)  # no QC selection
    means = condition_means(adata)
    control, knocked = means.loc[CONTROL], means.loc[f"A+{CONTROL}"]
    assert knocked["A"] == 0 and knocked["B"] < 0.05 * control["B"]  # B's only activator is gone
    assert knocked["C"] > 1.5 * control["C"]  # de-repressed (sergio_rs's own ko_perturbation would lower it)
    assert knocked["E"] == pytest.approx(control["E"], rel=0.1)


@needs_sergio
def test_errors_name_the_problem(network):
    kwargs = dict(n_control=10, cells_per_condition=10, seed=0)
    with pytest.raises(ValueError, match=r"singles.*NOTAGENE"):
        simulate_perturb_seq(network, singles=["NOTAGENE"], doubles=0, **kwargs)
    with pytest.raises(ValueError, match=r"doubles.*NOTAGENE"):
        simulate_perturb_seq(network, singles=0, doubles=[("G0", "NOTAGENE")], **kwargs)
    with pytest.raises(ValueError, match="two different genes"):
        simulate_perturb_seq(network, singles=0, doubles=[("G0", "G0")], **kwargs)
    with pytest.raises(ValueError, match="genes have targets"):
        simulate_perturb_seq(network, singles=10_000, doubles=0, **kwargs)
    with pytest.raises(ValueError, match="no edges"):
        simulate_perturb_seq(network.iloc[:0], singles=1, doubles=0, **kwargs)
    with pytest.raises(ValueError, match=r"lacks column.*'K'"):
        simulate_perturb_seq(network.drop(columns="K"), singles=1, doubles=0, **kwargs)
    with pytest.raises(ValueError, match="noise setting"):
        simulate_perturb_seq(network, singles=1, doubles=0, noise="DS99", **kwargs)
