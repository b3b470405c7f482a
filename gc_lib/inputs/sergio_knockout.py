"""SERGIO knock-outs through sergio_rs: the knocked-out gene held at zero, everything else as in the control cell.

SERGIO (Dibaeinia & Sinha, *Cell Systems* 2020) simulates each cell's mRNA levels with a chemical Langevin equation
on a gene regulatory network: a master regulator (MR, a gene without regulators) is produced at a constant rate; any
other gene at the sum of one Hill term per regulator, ``K·x^n/(x^n+h^n)`` for an activator (``K > 0``) and
``|K|·h^n/(x^n+h^n)`` for a repressor (``K < 0``); every gene decays at rate ``λ``. The half-response ``h`` of an
edge is its regulator's steady-state level. :mod:`sergio_rs` (the Rust port of SERGIO v2, GPL-3) runs it; this
module only drives it, and is imported lazily (``pip install 'gc_lib[sim]'``).

**Why not ``sergio_rs.GRN.ko_perturbation``.** In sergio_rs 0.2.3 it deletes the gene, then re-runs ``set_mrs``, so a
target left without regulators becomes a *new master regulator* with a random production rate instead of falling to
zero; a repressor's edge is deleted rather than evaluated at zero, so its targets go *down* instead of up; the
half-responses are re-derived from the perturbed network, which cancels the effect on genes two steps away
(SERGIO v2's own perturbation module fixes ``h`` at the unperturbed values, ``update_half_resp=False``, for that
reason); and it edits Gene objects it shares with the source network, so that network is corrupted afterwards.

**How a knock-out is done here.** Every condition is simulated on the same genes, edges, decays and MR production
rates; only interaction strengths change. Holding the knocked-out genes at zero and every ``h`` at its control
value, the mean-field steady state of gene ``g`` relative to control is ``ρ_g`` (0 for a knocked-out gene, 1 for an
untouched one, else ``Σ|K|·a(ρ_reg) / Σ|K|/2`` over its regulators, where ``a`` is the Hill term at ``ρ_reg`` times
the control level). sergio_rs will set ``h`` to the *perturbed* level, where a Hill term is ``|K'|/2``, so each edge
gets ``K' = sign(K)·2|K|·a(ρ_reg)``: untouched regulators keep ``K`` exactly, an activator held at zero contributes
0, a repressor held at zero its full ``|K|`` (de-repression). An edge whose regulator is at zero gets Hill exponent 0,
which makes its term the constant ``|K'|/2`` (and avoids sergio_rs's 0/0 when ``h = 0``). The knocked-out gene's own
simulated level is then set to 0.

**Cells.** Each cell is its own trajectory: one sergio_rs "cell type" per cell, sampled once after a burn-in, so
cells are independent draws (SERGIO's default of sampling one long trajectory gives strongly autocorrelated cells).
Cell types in sergio_rs get independent random MR rates, so all MRs are given (nearly) the same production rate and
their levels are set through their decay instead: level = rate / decay, with SERGIO's bimodal rates (low
[1, 2.5] or high [3.5, 5], decay 0.8) fixing the level. Counts come from SERGIO's technical-noise model (outlier
genes, library size, dropout, Poisson UMIs) applied once to all conditions together.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

#: SERGIO's default decay rate of a gene
SERGIO_DECAY = 0.8
#: SERGIO v2's low and high production-rate ranges of master regulators (drawn with probability 1/2 each)
MR_RATE_RANGES = ((1.0, 2.5), (3.5, 5.0))
#: the production rate every master regulator gets in sergio_rs; its level is set by its decay
COMMON_MR_RATE = 3.0
#: Euler–Maruyama time step and steps before a cell is sampled; a cell starts at the mean-field steady state, and
#: 5 time units (4 relaxation times at decay 0.8) bring its variance to within ~1% of the stationary one
TIME_STEP = 0.05
BURN_IN_STEPS = 100
#: sergio_rs's technical-noise settings, named after the data sets of the SERGIO paper
NOISE_SETTINGS = ("DS1", "DS2", "DS3", "DS4", "DS5", "DS6", "DS7", "DS8", "DS13", "DS14")


def import_sergio():
    """The :mod:`sergio_rs` module, or an ImportError saying how to install it."""
    try:
        import sergio_rs
    except ImportError as error:
        raise ImportError("simulating Perturb-seq needs sergio-rs (SERGIO v2 in Rust): pip install 'gc_lib[sim]'") \
            from error
    return sergio_rs


def topological_order(network: pd.DataFrame) -> list[str]:
    """The network's genes, regulators before their targets (Kahn's algorithm, ties by name); a cycle is an error."""
    genes = sorted(set(network["tf"]) | set(network["target"]))
    in_degree = network.groupby("target").size().reindex(genes, fill_value=0).to_dict()
    targets = network.groupby("tf")["target"].apply(sorted).to_dict()
    ready, order = deque(g for g in genes if in_degree[g] == 0), []
    while ready:
        gene = ready.popleft()
        order.append(gene)
        for target in targets.get(gene, []):
            in_degree[target] -= 1
            if in_degree[target] == 0:
                ready.append(target)
    if len(order) < len(genes):
        raise ValueError(f"the network has a cycle through {len(genes) - len(order)} genes; SERGIO needs an acyclic "
                         "network (build one with gc_lib.inputs.perturb_sim.simulation_network)")
    return order


def hill_activity(ratio, strength, hill) -> np.ndarray:
    """A Hill term relative to ``|K|`` when its regulator is at ``ratio`` × its half-response (1/2 at ratio 1)."""
    ratio, hill = np.asarray(ratio, dtype=float), np.asarray(hill, dtype=float)
    powered = ratio ** hill
    activation = powered / (powered + 1.0)
    return np.where(np.asarray(strength) > 0, activation, 1.0 - activation)


def knockout_ratios(network: pd.DataFrame, order: list[str], knocked_out) -> dict[str, float]:
    """Each gene's mean-field steady state relative to control when ``knocked_out`` genes are held at zero."""
    ratio = dict.fromkeys(order, 1.0)
    incoming = {gene: rows for gene, rows in network.groupby("target")}
    for gene in order:
        if gene in knocked_out:
            ratio[gene] = 0.0
            continue
        rows = incoming.get(gene)
        if rows is None:
            continue
        regulator_ratio = rows["tf"].map(ratio).to_numpy()
        if (regulator_ratio == 1.0).all():
            continue
        weight = rows["K"].abs().to_numpy()
        activity = hill_activity(regulator_ratio, rows["K"].to_numpy(), rows["hill"].to_numpy())
        ratio[gene] = float(weight @ activity / (0.5 * weight.sum()))
    return ratio


def condition_interactions(network: pd.DataFrame, ratio: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """sergio_rs's ``(K', n')`` per edge that reproduce the knock-out with half-responses fixed at control."""
    regulator_ratio = network["tf"].map(ratio).to_numpy()
    strength, hill = network["K"].to_numpy(), network["hill"].to_numpy()
    scaled = np.sign(strength) * 2.0 * np.abs(strength) * hill_activity(regulator_ratio, strength, hill)
    return scaled, np.where(regulator_ratio > 0, hill, 0).astype(int)


def master_regulator_decays(network: pd.DataFrame, rng: np.random.Generator) -> dict[str, float]:
    """Decay per master regulator so that its level is SERGIO's (a low or high rate / 0.8) at :data:`COMMON_MR_RATE`."""
    masters = sorted(set(network["tf"]) - set(network["target"]))
    high = rng.random(len(masters)) < 0.5
    low_rate, high_rate = (rng.uniform(*MR_RATE_RANGES[0], len(masters)), rng.uniform(*MR_RATE_RANGES[1], len(masters)))
    level = np.where(high, high_rate, low_rate) / SERGIO_DECAY
    return dict(zip(masters, (COMMON_MR_RATE / level).tolist()))


def simulate_condition(network: pd.DataFrame, order: list[str], decays: dict[str, float], knocked_out,
                       n_cells: int, seed: int) -> np.ndarray:
    """Clean (noise-free) expression, genes (in ``order``, a topological order) × cells, of ``n_cells`` independent
    cells with the ``knocked_out`` genes held at zero."""
    sergio_rs = import_sergio()
    strength, hill = condition_interactions(network, knockout_ratios(network, order, knocked_out))
    gene = {name: sergio_rs.Gene(name, decays.get(name, SERGIO_DECAY)) for name in order}
    grn = sergio_rs.GRN()
    for regulator, target, k, n in zip(network["tf"], network["target"], strength, hill):
        grn.add_interaction(gene[regulator], gene[target], float(k), None, int(n))
    grn.set_mrs()
    rate = COMMON_MR_RATE
    profile = sergio_rs.MrProfile.from_random(grn, n_cells, (rate, rate * 1.0001), (rate * 1.0001, rate * 1.0002),
                                              seed)
    frame = sergio_rs.Sim(grn, 1, BURN_IN_STEPS, 1, TIME_STEP, 1.0, seed).simulate(profile)
    rows = pd.Index(frame["Genes"].to_list()).get_indexer(order)
    expression = frame.drop("Genes").to_numpy()[rows]
    expression[np.isin(order, list(knocked_out))] = 0.0
    return expression


def to_counts(expression: np.ndarray, noise: str | None, seed: int) -> np.ndarray:
    """Integer UMI counts (genes × cells) from clean expression: SERGIO's technical noise ``noise`` (outlier genes,
    library size, dropout, Poisson), or with ``noise=None`` Poisson sampling alone."""
    if noise is None:
        return np.random.default_rng(seed).poisson(np.clip(expression, 0.0, None)).astype(np.float64)
    if noise not in NOISE_SETTINGS:
        raise ValueError(f"unknown SERGIO noise setting {noise!r}; expected one of {NOISE_SETTINGS} or None")
    sergio_rs = import_sergio()
    expression = np.ascontiguousarray(expression, dtype=np.float64)
    return np.asarray(sergio_rs.add_technical_noise(expression, getattr(sergio_rs.NoiseSetting, noise), seed))
