"""Cell *states* from the CELLxGENE Census, chosen by Cell Ontology term, for in-silico cell-fate screens.

A screen compares a start state (e.g. hESC, ``CL:0002322``) with goal states (e.g. gonadal somatic cells:
Sertoli ``CL:0000216``, granulosa ``CL:0000501``, or Leydig ``CL:0000178`` as an alternative). Two steps:

- :func:`census_term_counts` lists what the Census holds for some terms (cells per label and dataset, reading
  only three obs columns), so a missing or scarce state is seen before anything is downloaded;
- :func:`sample_states` samples up to ``max_cells_per_state`` cells of each named state with
  :func:`gc_lib.inputs.atlas.sample_census` and joins them into one contract AnnData with ``obs["state"]``.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .atlas import CENSUS_OBS_COLUMNS, census_organism, concat_chunks, sample_census

TERM_COLUMN = "cell_type_ontology_term_id"
_TERM_RE = re.compile(r"CL:\d{7}")
_COUNT_COLUMNS = [TERM_COLUMN, "cell_type", "dataset_id"]
_PER_STATE_INFO = ("obs_value_filter", "n_matching_cells")  # differ between states: kept under uns[...]["states"]


def _check_terms(terms: Iterable[str], what: str = "terms") -> list[str]:
    """``terms`` as a list without repeats, each a Cell Ontology id ``CL:NNNNNNN`` (else ValueError)."""
    if isinstance(terms, str):
        raise ValueError(f"{what} must be a list of Cell Ontology ids, not the string {terms!r}")
    terms = list(dict.fromkeys(terms))
    if not terms:
        raise ValueError(f"{what}: no Cell Ontology term id given")
    bad = [t for t in terms if not (isinstance(t, str) and _TERM_RE.fullmatch(t))]
    if bad:
        raise ValueError(f"{what}: {bad} are not Cell Ontology ids of the form 'CL:0000000'")
    return terms


def _terms_filter(terms: list[str]) -> str:
    """SOMA value filter selecting cells of ``terms`` (already checked, so quoting them is safe)."""
    return f"{TERM_COLUMN} in [{', '.join(repr(t) for t in terms)}]"


def census_term_counts(census, organism: str, terms: Iterable[str], *, primary_only: bool = True) -> pd.DataFrame:
    """How many Census cells carry each Cell Ontology term: one row per (term id, ``cell_type``, ``dataset_id``).

    Reads only those three obs columns of the cells with the terms (and ``is_primary_data == True`` when
    ``primary_only``, as :func:`~gc_lib.inputs.atlas.census_query` does, so a cell published twice counts once).
    Columns: ``cell_type_ontology_term_id``, ``cell_type``, ``dataset_id``, ``n_cells``, sorted by the first
    three. A term without any cell gets one row with ``n_cells`` 0 (label and dataset missing), so the listing
    says plainly what the Census lacks. Raises ``ValueError`` for ids not of the form ``CL:0000000``.
    """
    terms = _check_terms(terms)
    name, _ = census_organism(organism)
    obs = census["census_data"][name].obs
    missing = [c for c in _COUNT_COLUMNS if c not in obs.keys()]
    if missing:
        raise ValueError(f"obs columns {missing} are not in the Census obs; it has {list(obs.keys())}")
    value_filter = _terms_filter(terms) + (" and is_primary_data == True" if primary_only else "")
    cells = obs.read(value_filter=value_filter, column_names=_COUNT_COLUMNS).concat().to_pandas()
    cells = cells.astype({c: str for c in _COUNT_COLUMNS})
    counts = cells.groupby(_COUNT_COLUMNS).size().rename("n_cells").reset_index()
    absent = [t for t in terms if t not in set(counts[TERM_COLUMN])]
    empty = pd.DataFrame({TERM_COLUMN: absent, "cell_type": None, "dataset_id": None, "n_cells": 0})
    table = pd.concat([counts, empty], ignore_index=True) if absent else counts
    table["n_cells"] = table["n_cells"].astype(np.int64)
    return table.sort_values(_COUNT_COLUMNS, na_position="last", ignore_index=True)


def _check_states(states: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """States as {name: checked terms}; ValueError for no state, a bad id, or a term in two states."""
    if not states:
        raise ValueError("states: no state given; pass e.g. {'hESC': ['CL:0002322']}")
    checked = {name: _check_terms(terms, f"state {name!r}") for name, terms in states.items()}
    owner: dict[str, str] = {}
    for name, terms in checked.items():
        for term in terms:
            if term in owner:
                raise ValueError(f"cell term {term} is in two states, {owner[term]!r} and {name!r}; "
                                 f"each term may define one state only")
            owner[term] = name
    return checked


def _sample_state(census, organism: str, name: str, terms: list[str], extra_filter: str | None,
                  **kwargs) -> AnnData:
    """One state's cells via :func:`sample_census`; its ValueError (e.g. no matching cell) names the state."""
    value_filter = _terms_filter(terms) + (f" and ({extra_filter})" if extra_filter else "")
    try:
        return sample_census(census, organism, obs_value_filter=value_filter, **kwargs)
    except ValueError as exc:
        raise ValueError(f"state {name!r} (terms {terms}): {exc}") from exc


def sample_states(census, organism: str, states: Mapping[str, Iterable[str]], *, max_cells_per_state: int,
                  seed: int = 0, state_key: str = "state", **query) -> AnnData:
    """A random sample of up to ``max_cells_per_state`` Census cells per named state, as one contract AnnData.

    ``states`` maps a state name to its Cell Ontology term ids, e.g. ``{"hESC": ["CL:0002322"], "gonadal":
    ["CL:0000216", "CL:0000501"], "Leydig": ["CL:0000178"]}``. Each state is read with
    :func:`~gc_lib.inputs.atlas.sample_census` (same ``seed``), its terms' filter joined by "and" to any
    ``obs_value_filter`` in ``query`` (other :func:`~gc_lib.inputs.atlas.census_query` options pass through).
    ``obs_columns`` defaults to ``CENSUS_OBS_COLUMNS``; ``cell_type_ontology_term_id`` is always added.

    ``obs[state_key]`` holds the state name (categorical, categories in the order of ``states``).
    ``uns["gc_lib"]["states"]`` records, per state, its ``terms``, ``obs_value_filter``, ``n_matching_cells``
    and ``n_sampled_cells``. Raises ``ValueError`` for a bad term id, a term in two states, or a state
    without any matching cell (named in the message).
    """
    if max_cells_per_state < 1:
        raise ValueError(f"max_cells_per_state must be positive, got {max_cells_per_state}")
    checked = _check_states(states)
    census_organism(organism)  # a bad organism is not any one state's fault
    columns = tuple(query.pop("obs_columns", CENSUS_OBS_COLUMNS))
    if state_key in columns:
        raise ValueError(f"state_key {state_key!r} is also a requested obs column; choose another name")
    columns = tuple(dict.fromkeys([*columns, TERM_COLUMN]))
    extra = query.pop("obs_value_filter", None)
    samples = [_sample_state(census, organism, name, terms, extra, max_cells=max_cells_per_state, seed=seed,
                             obs_columns=columns, **query) for name, terms in checked.items()]
    adata = concat_chunks(samples)
    names = list(checked)
    adata.obs[state_key] = pd.Categorical(np.repeat(names, [s.n_obs for s in samples]), categories=names)
    info = {k: v for k, v in adata.uns["gc_lib"].items() if k not in _PER_STATE_INFO}
    info["states"] = {name: {"terms": terms, "obs_value_filter": s.uns["gc_lib"]["obs_value_filter"],
                             "n_matching_cells": int(s.uns["gc_lib"]["n_matching_cells"]),
                             "n_sampled_cells": int(s.n_obs)}
                      for (name, terms), s in zip(checked.items(), samples)}
    adata.uns["gc_lib"] = info
    return adata
