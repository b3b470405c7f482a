"""Human gene annotation from Bioconductor's org.Hs.eg.db SQLite (offline bundle), keyed by Ensembl gene ID.

The database is keyed by Entrez gene (``_id``); every reader here joins through its ``ensembl`` table, so
callers see Ensembl gene IDs only. An Entrez gene with several Ensembl IDs (alternate loci) yields one row
per ID. Tables used by the prior-knowledge builders and their checks:

- :func:`uniprot_to_ensembl` — resolves UniProt accessions in the OmniPath network (GRN prior);
- :func:`entrez_to_ensembl` — resolves the Entrez gene IDs of L1000 data (:mod:`gc_lib.inputs.gct`);
- :func:`pfam_domains` — Pfam domains per gene (the gene-family substitute);
- :func:`gene_locations` — hg38 gene models: chromosome, start/end, strand (the promoter substitute);
- :func:`go_bp_annotations` — GO biological-process annotations (an independent grouping for signal checks);
- :func:`transcription_factors` — genes with DNA-binding transcription factor activity (dosage labels, TF tokens).
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from .sources import fetch

#: GO "DNA-binding transcription factor activity": a gene annotated to it or a descendant term is a TF
TF_GO_TERM = "GO:0003700"


def database_path() -> Path:
    """The org.Hs.eg.db SQLite file (fetched and verified on first use)."""
    return fetch("org_hs_eg_db")


def query(sql: str, path: str | Path | None = None) -> pd.DataFrame:
    """Run one read-only query against org.Hs.eg.db (or the SQLite at ``path``, e.g. a test fixture)."""
    uri = f"file:{Path(path or database_path())}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return pd.read_sql_query(sql, db)


def metadata(path: str | Path | None = None) -> dict[str, str]:
    """The database's own metadata (source names and dates), for manifests."""
    table = query("SELECT name, value FROM metadata", path)
    return dict(zip(table["name"], table["value"]))


def uniprot_to_ensembl(path: str | Path | None = None) -> pd.DataFrame:
    """UniProt accession → Ensembl gene ID: ``uniprot, ensembl_id`` (an accession may map to several genes)."""
    return query("SELECT DISTINCT u.uniprot_id AS uniprot, e.ensembl_id FROM uniprot u "
                 "JOIN ensembl e ON e._id = u._id ORDER BY uniprot, ensembl_id", path)


def entrez_to_ensembl(path: str | Path | None = None) -> pd.DataFrame:
    """Entrez gene ID → Ensembl gene ID: ``entrez, ensembl_id`` (both strings; an Entrez gene with alternate-locus
    IDs has one row per ID)."""
    return query("SELECT DISTINCT g.gene_id AS entrez, e.ensembl_id FROM genes g JOIN ensembl e ON e._id = g._id "
                 "ORDER BY g._id, e.ensembl_id", path).astype(str)


def pfam_domains(path: str | Path | None = None) -> pd.DataFrame:
    """Pfam domains of each gene: ``ensembl_id, pfam_id`` (distinct pairs)."""
    return query("SELECT DISTINCT e.ensembl_id, p.pfam_id FROM pfam p JOIN ensembl e ON e._id = p._id "
                 "ORDER BY e.ensembl_id, p.pfam_id", path)


def gene_locations(path: str | Path | None = None) -> pd.DataFrame:
    """hg38 gene models of each gene: ``ensembl_id, chrom, start, end, strand`` (1-based, start < end).

    org.Hs.eg.db stores minus-strand genes with negative coordinates; here they are made positive and the
    strand is a separate column (``+``/``-``). A gene has one row per distinct UCSC gene model, so the row
    count per gene is a proxy for its number of alternative transcription start sites.
    """
    raw = query("SELECT e.ensembl_id, c.seqname AS chrom, c.start_location AS s, c.end_location AS t "
                "FROM chromosome_locations c JOIN ensembl e ON e._id = c._id", path)
    strand = np.where(raw["s"] < 0, "-", "+")
    start = np.minimum(raw["s"].abs(), raw["t"].abs())
    end = np.maximum(raw["s"].abs(), raw["t"].abs())
    out = pd.DataFrame({"ensembl_id": raw["ensembl_id"], "chrom": raw["chrom"].astype(str),
                        "start": start.astype(np.int64), "end": end.astype(np.int64), "strand": strand})
    return out.drop_duplicates().sort_values(["ensembl_id", "chrom", "start", "end"]).reset_index(drop=True)


def go_bp_annotations(path: str | Path | None = None, *, exclude_evidence: tuple[str, ...] = ("ND", "IEA")
                      ) -> pd.DataFrame:
    """GO biological-process terms of each gene: ``ensembl_id, go_id`` (direct annotations).

    ``ND`` (no data) and ``IEA`` (electronic, often inferred from domains, i.e. from Pfam) are left out by
    default, so a check of the family prior against GO is not a check of Pfam against itself.
    """
    excluded = ", ".join(f"'{code}'" for code in exclude_evidence) or "''"
    return query("SELECT DISTINCT e.ensembl_id, g.go_id FROM go_bp g JOIN ensembl e ON e._id = g._id "
                 f"WHERE g.evidence NOT IN ({excluded}) ORDER BY e.ensembl_id, g.go_id", path)


def transcription_factors(path: str | Path | None = None) -> pd.Series:
    """Sorted unique Ensembl IDs of genes annotated to :data:`TF_GO_TERM` or a descendant (evidence not ND).

    Read from the propagated ``go_mf_all`` table, so descendant terms count; ``ND`` (no data) is not evidence.
    Alternate-locus Ensembl IDs of a gene are included (org.Hs.eg.db lists them). ``path``: an org.Hs.eg.db
    SQLite (default: the bundled one).
    """
    ids = query("SELECT DISTINCT e.ensembl_id FROM go_mf_all g JOIN ensembl e ON e._id = g._id "
                f"WHERE g.go_id = '{TF_GO_TERM}' AND g.evidence != 'ND' ORDER BY e.ensembl_id", path)
    return pd.Series(sorted(set(ids["ensembl_id"].astype(str))), name="ensembl_id", dtype=object)
