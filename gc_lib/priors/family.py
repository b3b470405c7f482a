"""The gene-family prior: genes of one family get nearby vectors (GeneCompass's fourth prior).

The paper embeds HGNC gene groups with gene2vec: genes that share a group are linked, and the links are
embedded with word2vec (:mod:`gc_lib.priors.gene2vec`; random walks over the links by default). Two ways in:

- **HGNC** (the paper's resource): :func:`read_hgnc_groups` reads ``hgnc_complete_set.txt`` when a user
  has one; the offline bundle carries no gene-group columns.
- **Substitute** (offline, labelled as such in every manifest): :func:`bundle_family_groups` takes families
  from shared Pfam domains (Bioconductor org.Hs.eg.db, :func:`pfam_families`) plus transcription-factor
  families from JASPAR 2024 (:func:`jaspar_tf_families`). Many HGNC groups are defined by a domain
  ("Zinc fingers C2H2-type", "WD repeat domain containing", "Ankyrin repeat domain containing") and the TF
  families are HGNC groups too, so this is the nearest offline resource; it is still not HGNC.

Every grouping is a long table ``gene_id, group, group_name`` (a gene may sit in several groups, as in
HGNC); :func:`build_family_prior` turns any of them into a :class:`~gc_lib.priors.store.PriorTable`.
"""
from __future__ import annotations

import csv
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd

from ..corpus.vocab import Vocabulary
from ..inputs.fetch import sha256_file
from ..inputs.genes import map_symbols_to_ensembl, resolve_symbols
from ..inputs.sources import SOURCES, fetch
from .gene2vec import Gene2VecConfig, embed_pairs, pairs_within_groups
from .store import PriorTable, align_to_vocab, standardise

GROUP_COLUMNS = ["gene_id", "group", "group_name"]
HGNC_COLUMNS = ("ensembl_gene_id", "gene_group", "gene_group_id")
HUMAN_TAX_ID = "9606"


def _groups_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The canonical form of a grouping: distinct rows, sorted, string columns, fresh index."""
    out = frame[GROUP_COLUMNS].astype(str).drop_duplicates(["gene_id", "group"])
    return out.sort_values(["group", "gene_id"]).reset_index(drop=True)


def _empty_groups() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str) for c in GROUP_COLUMNS})


def drop_small_groups(groups: pd.DataFrame, min_size: int = 2) -> pd.DataFrame:
    """Groups with at least ``min_size`` distinct genes; a one-gene group yields no pair, so it says nothing."""
    size = groups.groupby("group")["gene_id"].transform("nunique")
    return groups[size >= min_size].reset_index(drop=True)


def read_hgnc_groups(path: str | Path) -> pd.DataFrame:
    """HGNC gene groups of an ``hgnc_complete_set.txt`` (tab-separated): ``gene_id, group, group_name``.

    ``gene_group_id`` and ``gene_group`` hold ``|``-separated lists (quoted in recent releases; the quotes
    are stripped here, and quoting is otherwise ignored so a stray ``"`` in a name cannot swallow rows).
    The i-th id pairs with the i-th name; when the two lists differ in length the names are left empty
    rather than mis-paired. Groups are ``hgnc:<id>``. Rows without an Ensembl ID or a group are dropped.
    Raises ``ValueError`` naming the missing columns when the file is not such a table.
    """
    header = pd.read_csv(path, sep="\t", nrows=0, quoting=csv.QUOTE_NONE)
    columns = [c.strip().strip('"') for c in header.columns]
    missing = [c for c in HGNC_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path} is not an HGNC complete-set table: it lacks columns {missing} "
                         f"(found {columns[:8]}{' …' if len(columns) > 8 else ''})")
    table = pd.read_csv(path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    table.columns = columns
    clean = {c: table[c].str.strip().str.strip('"').str.strip() for c in HGNC_COLUMNS}
    rows = []
    for gene, ids, names in zip(clean["ensembl_gene_id"], clean["gene_group_id"], clean["gene_group"]):
        if not gene or not ids:
            continue
        id_list = [i.strip() for i in ids.split("|")]
        name_list = [n.strip() for n in names.split("|")] if names else []
        if len(name_list) != len(id_list):
            name_list = [""] * len(id_list)
        rows.extend((gene, f"hgnc:{i}", n) for i, n in zip(id_list, name_list) if i)
    if not rows:
        return _empty_groups()
    return _groups_frame(pd.DataFrame(rows, columns=GROUP_COLUMNS))


def pfam_families(domains: pd.DataFrame, *, max_group_size: int | None = None) -> pd.DataFrame:
    """One group per Pfam domain (``pfam:PF00096``) from ``ensembl_id, pfam_id``
    (:func:`gc_lib.inputs.orgdb.pfam_domains`).

    A gene with several domains is in several groups, as in HGNC. Domains found in a single gene are dropped
    (no pair). Large domains (C2H2 zinc finger ~700 genes, Ig, kinase, KRAB, WD40, ankyrin) are *kept* by
    default: HGNC has groups of the same size and meaning, and :func:`~gc_lib.priors.gene2vec.pairs_within_groups`
    already caps each group's pairs, so they cannot drown the small families. ``max_group_size`` drops
    larger domains, for an ablation of promiscuous domains. ``group_name`` is the Pfam accession
    (org.Hs.eg.db carries no domain names).
    """
    missing = {"ensembl_id", "pfam_id"} - set(domains.columns)
    if missing:
        raise ValueError(f"Pfam domain table lacks columns {sorted(missing)}")
    known = domains.dropna(subset=["ensembl_id", "pfam_id"])
    out = pd.DataFrame({"gene_id": known["ensembl_id"].astype(str),
                        "group": "pfam:" + known["pfam_id"].astype(str), "group_name": known["pfam_id"].astype(str)})
    out = drop_small_groups(_groups_frame(out))
    if max_group_size is not None:
        size = out.groupby("group")["gene_id"].transform("nunique")
        out = out[size <= max_group_size].reset_index(drop=True)
    return out


def _latest_human_core(db: sqlite3.Connection, tax_id: str) -> pd.DataFrame:
    """Per BASE_ID, the latest version among the CORE profiles annotated with species ``tax_id``.

    "Latest human version", not "latest version if human": ~35 profiles (RUNX1, JUN, GATA3, SPI1 …) were
    re-derived from mouse data in a later release; their human TF is still a member of the same family,
    and dropping it would lose the gene, not a wrong annotation.
    """
    profiles = pd.read_sql_query(
        "SELECT m.ID, m.BASE_ID, m.VERSION, m.NAME FROM MATRIX m WHERE m.COLLECTION = 'CORE' AND EXISTS "
        "(SELECT 1 FROM MATRIX_SPECIES s WHERE s.ID = m.ID AND TRIM(s.TAX_ID) = ?)", db, params=(tax_id,))
    profiles = profiles.sort_values(["BASE_ID", "VERSION", "ID"]).drop_duplicates("BASE_ID", keep="last")
    return profiles.reset_index(drop=True)


def jaspar_tf_families(path: str | Path | None = None, *, symbols: pd.DataFrame | None = None,
                       tax_id: str = HUMAN_TAX_ID) -> tuple[pd.DataFrame, dict]:
    """Human TF families of JASPAR 2024 CORE: ``gene_id, group ("jaspar:<family>"), group_name``, and a report.

    ``path``: the JASPAR SQLite (default: the bundle's). A dimer profile ``A::B`` names both TFs; its
    ``family`` annotations are listed per partner in the same order (checked on JASPAR 2024: every dimer
    has exactly two), so the i-th family goes to the i-th partner; when the counts differ, every family
    goes to every partner. Symbols resolve through :func:`gc_lib.inputs.genes.map_symbols_to_ensembl` (or
    :func:`~gc_lib.inputs.genes.resolve_symbols` against ``symbols``, a symbol-table-shaped frame, for tests).
    Report: ``profiles, symbols, resolved, unresolved, unresolved_symbols, families``.
    """
    uri = f"file:{Path(path or fetch('jaspar2024'))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        profiles = _latest_human_core(db, tax_id)
        notes = pd.read_sql_query("SELECT LOCAL_ID, ID, VAL FROM MATRIX_ANNOTATION WHERE LOWER(TAG) = 'family' "
                                  "ORDER BY ID, LOCAL_ID", db)
    families = {k: [str(v).strip() for v in g["VAL"] if str(v).strip()] for k, g in notes.groupby("ID")}
    rows = []
    for matrix_id, name in zip(profiles["ID"], profiles["NAME"]):
        parts = [p.strip() for p in str(name).split("::") if p.strip()]
        fams = families.get(matrix_id, [])
        for i, symbol in enumerate(parts):
            mine = [fams[i]] if len(fams) == len(parts) else fams
            rows.extend((symbol, f) for f in mine)
    tf = pd.DataFrame(rows, columns=["symbol", "family"]).drop_duplicates()
    names = sorted(set(tf["symbol"]) | {p.strip() for n in profiles["NAME"] for p in str(n).split("::") if p.strip()})
    ids, _ = (map_symbols_to_ensembl(names, "human") if symbols is None else resolve_symbols(names, symbols))
    lookup = dict(zip(names, ids.to_numpy()))
    tf["gene_id"] = tf["symbol"].map(lookup)
    unresolved = [s for s in names if lookup[s] is None]
    tf = tf.dropna(subset=["gene_id"])
    table = (_groups_frame(pd.DataFrame({"gene_id": tf["gene_id"], "group": "jaspar:" + tf["family"],
                                         "group_name": tf["family"]})) if len(tf) else _empty_groups())
    report = {"profiles": int(len(profiles)), "symbols": len(names), "resolved": len(names) - len(unresolved),
              "unresolved": len(unresolved), "unresolved_symbols": unresolved[:20],
              "families": int(table["group"].nunique())}
    return table, report


def _source_entry(name: str, path: str | Path | None) -> dict:
    """Provenance of one input: the registry's pin for the bundle file, or the sha256 of a given file."""
    if path is None:
        return SOURCES[name].provenance()
    return {"name": name, "path": str(path), "sha256": sha256_file(path)}


def _summary(groups: pd.DataFrame) -> dict:
    return {"groups": int(groups["group"].nunique()), "genes": int(groups["gene_id"].nunique())}


def bundle_family_groups(*, orgdb_path: str | Path | None = None, jaspar_path: str | Path | None = None,
                         symbols: pd.DataFrame | None = None, max_group_size: int | None = None
                         ) -> tuple[pd.DataFrame, dict]:
    """The offline substitute for HGNC gene groups: Pfam-domain groups + JASPAR TF families, and its info.

    Both parts keep only groups of two or more genes. The info (for the prior's manifest) says
    ``substitute: True``, what it stands in for, each source with package, version and sha256, and the
    group and gene counts overall and per source. ``orgdb_path``, ``jaspar_path`` and ``symbols`` replace
    the bundle files (tests); the info then records the sha256 of the files actually read.
    """
    from ..inputs.orgdb import pfam_domains

    pfam = pfam_families(pfam_domains(orgdb_path), max_group_size=max_group_size)
    jaspar, report = jaspar_tf_families(jaspar_path, symbols=symbols)
    jaspar = drop_small_groups(jaspar)
    groups = _groups_frame(pd.concat([pfam, jaspar], ignore_index=True))
    info = {"substitute": True, "substitute_for": "HGNC gene groups",
            "resource": "Pfam domains shared by genes (org.Hs.eg.db) + JASPAR 2024 CORE human TF families",
            "sources": [_source_entry("org_hs_eg_db", orgdb_path), _source_entry("jaspar2024", jaspar_path)],
            **_summary(groups), "by_source": {"pfam": _summary(pfam), "jaspar": _summary(jaspar)},
            "jaspar": report, "max_group_size": max_group_size}
    return groups, info


def build_family_prior(groups: pd.DataFrame, vocab: Vocabulary, *, config: Gene2VecConfig = Gene2VecConfig(),
                       max_pairs_per_group: int = 2_000, orthology: str = "one2one", info: dict | None = None
                       ) -> tuple[PriorTable, pd.DataFrame]:
    """The ``family`` prior of ``vocab`` from a grouping (``gene_id, group``; human Ensembl IDs).

    Pairs within each group (at most ``max_pairs_per_group`` each, sampled with ``config.seed``) →
    gene2vec → :func:`~gc_lib.priors.store.standardise` → :func:`~gc_lib.priors.store.align_to_vocab` (mouse tokens take
    their human ortholog's vector per ``orthology``). Returns the table and the standardised human vectors
    (what :func:`~gc_lib.priors.store.save_prior` stores). The info records the method, parameters, pair/group
    counts, then ``info`` (e.g. from :func:`bundle_family_groups`); ``substitute`` defaults to whether any
    group is not an ``hgnc:`` group, so a prior built from Pfam/JASPAR groups is never passed off as HGNC.
    """
    missing = {"gene_id", "group"} - set(groups.columns)
    if missing:
        raise ValueError(f"group table lacks columns {sorted(missing)}")
    pairs = pairs_within_groups(groups, max_pairs_per_group=max_pairs_per_group, seed=config.seed)
    vectors = standardise(embed_pairs(pairs, config))
    paired = drop_small_groups(groups[["gene_id", "group"]].astype(str).drop_duplicates())
    kinds = paired["group"].drop_duplicates().str.split(":", n=1).str[0]
    details = {"method": config.describe(),
               "parameters": {"gene2vec": config.to_dict(), "max_pairs_per_group": int(max_pairs_per_group)},
               "n_pairs": int(len(pairs)), "n_groups": int(paired["group"].nunique()),
               "n_genes_embedded": int(len(vectors)),
               "group_kinds": {k: int(v) for k, v in kinds.value_counts().sort_index().items()}}
    details.update(info or {})
    details.setdefault("substitute", bool((kinds != "hgnc").any()))
    table = align_to_vocab("family", vectors, vocab, orthology=orthology, info=details)
    return table, vectors
