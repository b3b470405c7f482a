"""Conditions, out-of-distribution dose splits and the simple baselines of the drug-response benchmark (notebook 08).

A **condition** is one (drug, dose) pair; its profile is the mean of its wells (on the L1000 plate each condition
has one well; on sci-Plex many cells). Splits hold out conditions, never single wells of a condition, so a held-out
dose is unseen as a whole:

- ``"highest"``: each drug's highest dose (extrapolation along the dose axis, CPA's out-of-distribution task);
- ``"middle"``: each drug's middle dose (the ``n // 2``-th of its ``n`` sorted doses: 1.11 µM of 0.04 … 10 µM);
  interpolation. A drug with fewer than 3 doses keeps all of them in training for this split;
- unseen drugs (:func:`held_out_drugs`): every dose of a random share of the drugs, for a model whose drug input
  is a feature of the molecule (a learned per-drug embedding cannot serve a drug it never saw).

Baselines (Ahlmann-Eltze et al., *Nature Methods* 2025, found such baselines hard to beat), each predicting the mean
profile of a held-out condition from the training conditions only:

- ``control_mean``: no change (the mean control profile);
- ``drug_mean``: the mean of the drug's training conditions;
- ``nearest_dose``: the drug's training condition nearest in log10 dose (the lower one on a tie);
- ``log_dose_linear``: per gene, the line in log10 dose through the drug's two training doses nearest the held-out
  one (both below it for the highest dose, so this extrapolates); the nearest dose when the drug has only one;
- ``dose_mean``: the mean of the *other* drugs' training conditions at the same dose (the "training mean" of
  Ahlmann-Eltze et al.; the one baseline besides ``control_mean`` that also serves an unseen drug).

A baseline that needs the drug's own training conditions falls back to ``control_mean`` when there are none, and
``dose_mean`` falls back to the mean of all training conditions when no other drug has that dose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

SPLITS = ("highest", "middle")
BASELINES = ("control_mean", "drug_mean", "nearest_dose", "log_dose_linear", "dose_mean")
#: The baselines that can predict a drug none of whose conditions is in training.
UNSEEN_DRUG_BASELINES = ("control_mean", "dose_mean")


@dataclass(frozen=True)
class Conditions:
    """Treated conditions (``table``: drug, dose, n_wells; one row per condition) with their mean profiles
    (``means``, conditions × genes), and the control wells' mean (``control_mean``) and SD (``control_sd``) per gene."""

    table: pd.DataFrame
    means: np.ndarray
    control_mean: np.ndarray
    control_sd: np.ndarray


def dense_profiles(adata: AnnData, dtype=np.float32) -> np.ndarray:
    """``X`` as a dense array of ``dtype``; a clear error for missing or non-finite values."""
    X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=dtype)
    if not np.isfinite(X).all():
        raise ValueError("X holds missing or non-finite values; impute or drop them first")
    return X


def drug_codes(adata: AnnData, drug_key: str, dose_key: str, control_value) -> tuple[list[str], np.ndarray,
                                                                                       np.ndarray]:
    """Drug names (controls excluded), a code per well (controls: ``len(drugs)``) and a dose per well (controls 0)."""
    for key in (drug_key, dose_key):
        if key not in adata.obs.columns:
            raise ValueError(f"obs has no column {key!r} (columns: {list(adata.obs.columns)})")
    names = adata.obs[drug_key].astype(str).to_numpy()
    control = names == str(control_value)
    if not control.any():
        raise ValueError(f"no control wells: no {drug_key} == {control_value!r}")
    drugs = sorted(set(names[~control]))
    if not drugs:
        raise ValueError(f"every well is a control ({drug_key} == {control_value!r}); nothing to fit")
    dose = np.asarray(adata.obs[dose_key], dtype=np.float64)
    bad = ~control & ~(np.isfinite(dose) & (dose > 0))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} treated wells have no positive {dose_key} (e.g. {adata.obs_names[bad][0]})")
    codes = np.where(control, len(drugs), np.searchsorted(drugs, names))   # drugs are sorted; controls last
    return drugs, codes, np.where(control, 0.0, dose)


def condition_means(adata: AnnData, *, drug_key: str, dose_key: str, control_value) -> Conditions:
    """The treated conditions of ``adata`` (wells × genes, log-scale ``X``) and their mean profiles, sorted by drug
    then dose; controls are the wells with ``obs[drug_key] == control_value``."""
    drugs, codes, doses = drug_codes(adata, drug_key, dose_key, control_value)
    control = codes == len(drugs)
    if control.sum() < 2:
        raise ValueError(f"need at least 2 control wells ({drug_key} == {control_value!r}), found {control.sum()}")
    X = dense_profiles(adata, np.float64)
    wells = pd.DataFrame({"drug": np.asarray(drugs, dtype=object)[codes[~control]], "dose": doses[~control]})
    groups = wells.groupby(["drug", "dose"], sort=True).indices
    table = pd.DataFrame(list(groups), columns=["drug", "dose"])
    table["n_wells"] = [len(index) for index in groups.values()]
    treated = X[~control]
    means = np.stack([treated[index].mean(0) for index in groups.values()])
    return Conditions(table, means, X[control].mean(0), X[control].std(0, ddof=1))


def held_out(table: pd.DataFrame, split: str) -> np.ndarray:
    """Boolean mask over the conditions of ``table``: the ones the ``split`` holds out (module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    test = np.zeros(len(table), dtype=bool)
    for _, rows in table.groupby("drug", sort=False).indices.items():
        order = rows[np.argsort(table["dose"].to_numpy()[rows], kind="stable")]
        if split == "highest" and len(order) >= 2:
            test[order[-1]] = True
        elif split == "middle" and len(order) >= 3:
            test[order[len(order) // 2]] = True
    return test


def held_out_drugs(table: pd.DataFrame, fraction: float, *, seed: int = 0) -> np.ndarray:
    """Boolean mask over the conditions of ``table``: every condition of ``round(fraction × drugs)`` drugs (at least
    one, never all) drawn at random with ``seed``."""
    drugs = np.sort(table["drug"].unique())
    if len(drugs) < 2:
        raise ValueError(f"need at least 2 drugs to hold some out, found {len(drugs)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    n = min(max(1, round(fraction * len(drugs))), len(drugs) - 1)
    chosen = np.random.default_rng(seed).choice(drugs, size=n, replace=False)
    return table["drug"].isin(chosen).to_numpy()


def _dose_mean(conditions: Conditions, test: np.ndarray, i: int) -> np.ndarray:
    table = conditions.table
    others = ~test & (table["drug"].to_numpy() != table["drug"].iat[i])
    same = others & np.isclose(table["dose"].to_numpy(), table["dose"].iat[i])
    pool = same if same.any() else others
    return conditions.means[pool].mean(0) if pool.any() else conditions.control_mean


def _nearest_two(train_log_dose: np.ndarray, target: float) -> np.ndarray:
    """Indices of the (up to) two training doses nearest ``target`` in log dose (the lower first on ties)."""
    distance = np.abs(train_log_dose - target) + 1e-9 * (train_log_dose > target)
    return np.argsort(distance, kind="stable")[:2]


def predict_baseline(name: str, conditions: Conditions, test: np.ndarray) -> np.ndarray:
    """Predicted mean profiles (held-out conditions × genes) of baseline ``name`` from the other conditions."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    table, means = conditions.table, conditions.means
    log_dose = np.log10(table["dose"].to_numpy())
    out = []
    for i in np.flatnonzero(test):
        train = np.flatnonzero(~test & (table["drug"].to_numpy() == table["drug"].iat[i]))
        if name == "dose_mean":
            out.append(_dose_mean(conditions, test, i))
        elif name == "control_mean" or len(train) == 0:
            out.append(conditions.control_mean)
        elif name == "drug_mean":
            out.append(means[train].mean(0))
        else:
            near = train[_nearest_two(log_dose[train], log_dose[i])]
            if name == "nearest_dose" or len(near) == 1:
                out.append(means[near[0]])
            else:
                (x0, x1), (y0, y1) = log_dose[near], means[near]
                out.append(y0 + (y1 - y0) * (log_dose[i] - x0) / (x1 - x0))
    return np.asarray(out).reshape(-1, means.shape[1])
