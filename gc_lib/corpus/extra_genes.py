"""Tokens for genes that no corpus cell expresses (``build_corpus(extra_genes=...)``).

The vocabulary holds the genes expressed in at least one kept cell. A gene that none expresses can still be
needed as a token: an in-silico screen inserts a transcription factor into cells that lack it
(:func:`gc_lib.inputs.genes.tf_tokens` lists them), and a user's new data may hold it. ``extra_genes`` names such
genes (``gene_id, species, symbol``); they become tokens of their species next to the expressed ones, sorted
with them by Ensembl ID. A gene that the corpus does express is a token already and is not added again.

**Median rule.** The tokenizer divides each count by the gene's non-zero corpus median, and an unexpressed gene
has none. It gets the median of its species' expressed genes' medians: such a gene enters a cell only by
insertion, or in a user's new data, where any fixed scale is a guess; this one puts a count of it mid-range
among the genes of its species, neither at the top of every cell nor at the bottom. A species of which no gene
is expressed (no input of that species) has no scale to borrow: its extra genes are left out, and counted.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from ..inputs.contract import ENSEMBL_PREFIX, SPECIES, is_species_gene_id, strip_version

COLUMNS: tuple[str, ...] = ("gene_id", "species", "symbol")
MEDIAN_RULE = "median of the species' expressed genes' medians"


def check_extra_genes(genes: pd.DataFrame | None) -> pd.DataFrame | None:
    """``extra_genes`` checked and normalised: unversioned ``gene_id``, ``species``, ``symbol`` (the gene ID where
    missing), one row per gene (the first), sorted by species then ID; ``None`` for ``None`` or an empty table.

    Raises ``ValueError`` for a non-DataFrame, missing columns, an unknown species, or an ID that is not an
    Ensembl gene ID of its species.
    """
    if genes is None:
        return None
    if not isinstance(genes, pd.DataFrame):
        raise ValueError(f"extra_genes must be a DataFrame with columns {list(COLUMNS)}; got {type(genes).__name__}")
    missing = [c for c in COLUMNS if c not in genes.columns]
    if missing:
        raise ValueError(f"extra_genes lacks columns {missing}; it needs {list(COLUMNS)}")
    table = pd.DataFrame({"gene_id": strip_version(genes["gene_id"].astype(str)),
                          "species": genes["species"].astype(str).to_numpy()})
    unknown = sorted(set(table["species"]) - set(SPECIES))
    if unknown:
        raise ValueError(f"extra_genes: unknown species {unknown}; expected one of {SPECIES}")
    of_species = np.zeros(len(table), dtype=bool)
    for name in SPECIES:
        rows = (table["species"] == name).to_numpy()
        of_species[rows] = is_species_gene_id(table["gene_id"][rows], name)
    wrong = ~of_species
    if wrong.any():
        examples = table[wrong].head(3).to_dict(orient="records")
        raise ValueError(f"extra_genes: {int(wrong.sum())} gene IDs are not Ensembl gene IDs of their species "
                         f"({ENSEMBL_PREFIX}), e.g. {examples}")
    symbol = genes["symbol"].to_numpy(dtype=object)
    table["symbol"] = [str(s) if pd.notna(s) and str(s) else g for s, g in zip(symbol, table["gene_id"])]
    table = table.drop_duplicates("gene_id")
    table["order"] = table["species"].map({s: i for i, s in enumerate(SPECIES)})
    table = table.sort_values(["order", "gene_id"]).drop(columns="order").reset_index(drop=True)
    return table if len(table) else None


def table_hash(genes: pd.DataFrame) -> str:
    """sha256 of a checked extra-gene table (rows in order): what the corpus build key records."""
    payload = json.dumps([list(genes[c]) for c in COLUMNS], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def add_extra_genes(expressed: pd.DataFrame, extra: pd.DataFrame | None) -> tuple[pd.DataFrame, dict | None]:
    """The expressed genes plus the extra ones, each with its median and an ``extra`` flag, and a report.

    ``expressed``: ``gene_id, species, symbol, median`` of the genes expressed in the corpus; ``extra``: a
    :func:`check_extra_genes` table (or ``None``: nothing added, report ``None``). Extra genes get the median
    of the module's rule. The report holds the rule, the table's hash and per species: ``given``,
    ``already_expressed`` (not added again), ``added``, ``left_out`` (no expressed gene of the species) and
    ``median`` (the value given, ``None`` where nothing could be added).
    """
    table = expressed.assign(extra=False)
    if extra is None:
        return table, None
    new = extra[~extra["gene_id"].isin(set(expressed["gene_id"]))]
    parts, per_species = [table], {}
    for species in SPECIES:
        given = extra[extra["species"] == species]
        mine = new[new["species"] == species]
        scale = expressed.loc[expressed["species"] == species, "median"].to_numpy(dtype=np.float64)
        median = float(np.median(scale)) if len(scale) else None
        if median is not None:
            parts.append(mine.assign(median=median, extra=True))
        per_species[species] = {"given": len(given), "already_expressed": len(given) - len(mine),
                                "added": len(mine) if median is not None else 0,
                                "left_out": 0 if median is not None else len(mine), "median": median,
                                "n_nonzero": 0}  # by definition: an added gene is one no kept cell expresses
    report = {"median_rule": MEDIAN_RULE, "sha256": table_hash(extra), "per_species": per_species}
    return pd.concat(parts, ignore_index=True), report
