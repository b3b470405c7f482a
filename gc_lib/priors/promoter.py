"""The promoter prior: promoter DNA embeddings, or an annotation-only SUBSTITUTE when no genome is at hand.

GeneCompass embeds each gene's promoter (−500/+2000 bp around the TSS) with a DNA language model. Two paths:

- **sequence** (the paper's prior, needs sequence): ``promoters`` from :func:`~gc_lib.priors.promoter_sequence.
  promoter_windows` (a genome FASTA) or :func:`~gc_lib.priors.promoter_sequence.read_promoter_fasta`, embedded by
  k-mer TF-IDF + SVD (``method="kmer"``, no model needed) or by a DNA language model (``method="lm"``);
- **substitute** (the offline bundle has no genome): features of the gene models alone
  (:func:`annotation_features` from :func:`gc_lib.inputs.orgdb.gene_locations`, optionally with promoter ChIP
  targets), reduced by SVD (:func:`embed_annotation`). It describes the promoter's *context* — number of
  alternative TSSs, strand, gene length, chromosome and position, gene density, bidirectional promoters, TFs
  bound — not its sequence; the manifest says so (``substitute: True``).

:func:`build_promoter_prior` runs either path and aligns the result to a vocabulary (:mod:`gc_lib.priors.store`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..corpus.vocab import Vocabulary
from .promoter_sequence import embed_kmer_svd, embed_with_language_model, is_primary, normalise_chrom, svd_embed
from .store import PriorTable, align_to_vocab, standardise

SUBSTITUTE_FOR = "promoter DNA sequence (-500/+2000 bp) embedded by a DNA language model"
#: gene-model columns of :func:`annotation_features` (then ``chrom_<name>`` one-hot, then ``tf_<id>``)
GENE_MODEL_FEATURES: tuple[str, ...] = ("log1p_n_tss", "strand", "log_length", "rel_position", "log1p_density",
                                        "bidirectional")
BLOCK_PREFIXES = {"chrom": "chrom_", "chip": "tf_"}


def _chrom_order(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, {"X": 0, "Y": 1, "M": 2}.get(name, 3), name)


def annotation_features(locations: pd.DataFrame, *, chip_edges: pd.DataFrame | None = None,
                        neighbourhood_bp: int = 100_000, bidirectional_bp: int = 1_000) -> pd.DataFrame:
    """Promoter-context features of each gene from its gene models only (the promoter SUBSTITUTE).

    ``locations``: ``ensembl_id`` (or ``gene_id``), ``chrom, start, end, strand`` (1-based, as
    :func:`gc_lib.inputs.orgdb.gene_locations`), one row per gene model. Primary-assembly contigs only; a gene on
    several loci (PAR genes, paralogous copies) takes its *main locus*: the (chromosome, strand) with most
    models (ties: chromosome order, then '+'). Genes with models on alt/unplaced contigs only are left out
    (counted in ``attrs["dropped_genes"]``). Columns (float32, indexed by ``gene_id``, sorted):

    - ``log1p_n_tss`` — log1p(distinct TSSs of the main locus): alternative promoters;
    - ``strand`` — +1 / −1;
    - ``log_length`` — log1p(length of the gene's longest model, bp; not the span of all models, which for a
      gene with copies along a chromosome would measure the copies' distance);
    - ``rel_position`` — the gene's TSS (its most upstream one) / the chromosome's extent (largest model end);
    - ``log1p_density`` — log1p(other genes whose TSS lies within ``neighbourhood_bp`` of the gene's TSS);
    - ``bidirectional`` — 1 when a gene on the opposite strand has a TSS within ``bidirectional_bp`` of one of
      the gene's TSSs (head-to-head or overlapping), else 0;
    - ``chrom_<name>`` — one-hot chromosome (``chr`` prefix dropped, ``MT`` as ``M``);
    - ``tf_<tf_id>`` — with ``chip_edges`` (``tf_id, target_id``: promoter-proximal ChIP binding): 1 when the TF
      binds the gene's promoter; one column per TF with a target among these genes.
    """
    gene = "gene_id" if "gene_id" in locations.columns else "ensembl_id"
    missing = {gene, "chrom", "start", "end", "strand"} - set(locations.columns)
    if missing:
        raise ValueError(f"locations lack columns {sorted(missing)}")
    rows = pd.DataFrame({"gene_id": locations[gene].astype(str).to_numpy(),
                         "chrom": [normalise_chrom(c) for c in locations["chrom"]],
                         "start": locations["start"].to_numpy(np.int64), "end": locations["end"].to_numpy(np.int64),
                         "strand": locations["strand"].to_numpy()})
    bad = sorted(set(rows["strand"]) - {"+", "-"})
    if bad:
        raise ValueError(f"strand must be '+' or '-'; got {bad[:5]}")
    all_genes = rows["gene_id"].nunique()
    rows = rows[[is_primary(c) for c in rows["chrom"]]]
    if rows.empty:
        raise ValueError("no gene model lies on a primary-assembly chromosome")
    rows = rows.assign(tss=np.where(rows["strand"] == "+", rows["start"], rows["end"]),
                       length=rows["end"] - rows["start"] + 1)
    extent = rows.groupby("chrom")["end"].max()

    # main locus of each gene: the (chrom, strand) with most models
    loci = rows.groupby(["gene_id", "chrom", "strand"]).size().rename("n").reset_index()
    rank = {c: i for i, c in enumerate(sorted(loci["chrom"].unique(), key=_chrom_order))}
    loci["order"] = loci["chrom"].map(rank)
    loci = loci.sort_values(["gene_id", "n", "order", "strand"], ascending=[True, False, True, True])
    main = loci.drop_duplicates("gene_id")[["gene_id", "chrom", "strand"]]
    rows = rows.merge(main, on=["gene_id", "chrom", "strand"])
    per_gene = rows.groupby("gene_id").agg(chrom=("chrom", "first"), strand=("strand", "first"),
                                           start=("start", "min"), end=("end", "max"), n_tss=("tss", "nunique"),
                                           length=("length", "max"))
    tss = np.where(per_gene["strand"] == "+", per_gene["start"], per_gene["end"])
    per_gene["tss"] = tss
    density = np.zeros(len(per_gene), dtype=np.int64)
    for chrom, idx in per_gene.groupby("chrom").indices.items():
        positions = np.sort(tss[idx])
        density[idx] = (np.searchsorted(positions, tss[idx] + neighbourhood_bp, side="right")
                        - np.searchsorted(positions, tss[idx] - neighbourhood_bp, side="left") - 1)
    bidirectional = per_gene.index.isin(_bidirectional_genes(rows, bidirectional_bp))

    features = pd.DataFrame({
        "log1p_n_tss": np.log1p(per_gene["n_tss"].to_numpy()),
        "strand": np.where(per_gene["strand"] == "+", 1.0, -1.0),
        "log_length": np.log1p(per_gene["length"]).to_numpy(),
        "rel_position": tss / per_gene["chrom"].map(extent).to_numpy(),
        "log1p_density": np.log1p(density),
        "bidirectional": bidirectional.astype(float),
    }, index=pd.Index(per_gene.index, name="gene_id"))
    chroms = sorted(per_gene["chrom"].unique(), key=_chrom_order)
    onehot = pd.DataFrame({f"chrom_{c}": (per_gene["chrom"] == c).astype(float).to_numpy() for c in chroms},
                          index=features.index)
    blocks = [features, onehot]
    n_tfs = 0
    if chip_edges is not None:
        lacking = {"tf_id", "target_id"} - set(chip_edges.columns)
        if lacking:
            raise ValueError(f"chip_edges lack columns {sorted(lacking)}")
        edges = chip_edges[chip_edges["target_id"].astype(str).isin(features.index)]
        edges = edges.assign(tf_id=edges["tf_id"].astype(str), target_id=edges["target_id"].astype(str))
        edges = edges.drop_duplicates(["tf_id", "target_id"])
        profile = pd.crosstab(edges["target_id"], edges["tf_id"]).clip(upper=1)
        profile = profile.reindex(index=features.index, fill_value=0).astype(float)
        profile.columns = [f"tf_{c}" for c in profile.columns]
        n_tfs = profile.shape[1]
        blocks.append(profile)
    out = pd.concat(blocks, axis=1).astype(np.float32)
    out.attrs.update(dropped_genes=int(all_genes - len(out)), n_tfs=int(n_tfs), neighbourhood_bp=int(neighbourhood_bp),
                     bidirectional_bp=int(bidirectional_bp))
    return out


def _bidirectional_genes(rows: pd.DataFrame, distance: int) -> set[str]:
    """Genes with a TSS within ``distance`` bp of a TSS of an opposite-strand gene (main loci only)."""
    flagged: set[str] = set()
    points = rows[["gene_id", "chrom", "strand", "tss"]].drop_duplicates()
    for _, group in points.groupby("chrom"):
        plus, minus = group[group["strand"] == "+"], group[group["strand"] == "-"]
        for these, other in ((plus, minus), (minus, plus)):
            if these.empty or other.empty:
                continue
            positions = np.sort(other["tss"].to_numpy())
            t = these["tss"].to_numpy()
            hits = (np.searchsorted(positions, t + distance, side="right")
                    - np.searchsorted(positions, t - distance, side="left")) > 0
            flagged.update(these["gene_id"].to_numpy()[hits])
    return flagged


def embed_annotation(features: pd.DataFrame, *, dim: int = 128, seed: int = 0) -> pd.DataFrame:
    """Reduce :func:`annotation_features` to ``dim`` SVD components (fewer when there are fewer features).

    Each column is z-scored (constant columns become 0), then each block — gene-model features, chromosome
    one-hot, TF profile — is divided by sqrt(its column count), so every block carries the same total variance
    and the 24-column one-hot or a profile of hundreds of TFs does not drown the six gene-model features.
    ``attrs``: ``dim`` (used), ``dim_requested``, ``explained_variance_ratio_sum``, ``blocks`` (columns each).
    """
    if features.empty:
        raise ValueError("no features to embed")
    values = features.to_numpy(dtype=np.float64)
    std = values.std(axis=0)
    scaled = (values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)
    scaled[:, std == 0] = 0.0
    blocks = {name: [i for i, c in enumerate(features.columns) if str(c).startswith(prefix)]
              for name, prefix in BLOCK_PREFIXES.items()}
    taken = {i for cols in blocks.values() for i in cols}
    blocks = {"gene_model": [i for i in range(features.shape[1]) if i not in taken], **blocks}
    for cols in blocks.values():
        if cols:
            scaled[:, cols] /= np.sqrt(len(cols))
    out = svd_embed(scaled, dim, seed, "annotation_svd_")
    out.index = pd.Index(features.index.astype(str), name="gene_id")
    out.attrs.update(method="annotation_svd", seed=int(seed), n_genes=int(len(out)),
                     blocks={name: len(cols) for name, cols in blocks.items() if cols})
    return out


def build_promoter_prior(vocab: Vocabulary, *, promoters: pd.DataFrame | None = None,
                         locations: pd.DataFrame | None = None, chip_edges: pd.DataFrame | None = None,
                         method: str = "kmer", k: int = 6, dim: int = 128, seed: int = 0, orthology: str = "one2one",
                         model=None, batch_size: int = 16, device: str = "cpu", max_length: int | None = None,
                         neighbourhood_bp: int = 100_000, info: dict | None = None
                         ) -> tuple[PriorTable, pd.DataFrame]:
    """The ``promoter`` prior aligned to ``vocab``, and the (standardised) human-gene vectors behind it.

    With ``promoters`` (``gene_id, sequence``; the sequence path, ``substitute: False``): ``method="kmer"``
    (:func:`~gc_lib.priors.promoter_sequence.embed_kmer_svd`) or ``method="lm"`` with ``model=`` (a local path or name,
    :func:`~gc_lib.priors.promoter_sequence.embed_with_language_model`). With only ``locations`` (gene models, e.g.
    :func:`gc_lib.inputs.orgdb.gene_locations`): the annotation SUBSTITUTE (:func:`annotation_features`, with
    ``chip_edges`` if given, then :func:`embed_annotation`), ``substitute: True``. Vectors are
    :func:`~gc_lib.priors.store.standardise`-d, then aligned (mouse tokens take their ``orthology`` partner's vector).
    ``info`` (sources, notes) is merged into the manifest fields.
    """
    if promoters is not None:
        if method == "kmer":
            vectors = embed_kmer_svd(promoters, k=k, dim=dim, seed=seed)
            parameters = {"k": k, "dim": dim, "seed": seed, "normalisation": vectors.attrs["normalisation"]}
        elif method == "lm":
            if model is None:
                raise ValueError("method='lm' needs model= (a local directory or model name)")
            vectors = embed_with_language_model(promoters, model, batch_size=batch_size, device=device,
                                                max_length=max_length)
            parameters = {"model": vectors.attrs["model"], "max_length": vectors.attrs["max_length"],
                          "truncated": vectors.attrs["truncated"], "pooling": vectors.attrs["pooling"]}
        else:
            raise ValueError(f"method must be 'kmer' or 'lm' for promoter sequences; got {method!r}")
        details = {"method": vectors.attrs["method"], "substitute": False,
                   "n_promoters": vectors.attrs["n_promoters"]}
    elif locations is not None:
        features = annotation_features(locations, chip_edges=chip_edges, neighbourhood_bp=neighbourhood_bp)
        vectors = embed_annotation(features, dim=dim, seed=seed)
        parameters = {"dim": dim, "seed": seed, "neighbourhood_bp": neighbourhood_bp,
                      "bidirectional_bp": features.attrs["bidirectional_bp"], "blocks": vectors.attrs["blocks"]}
        details = {"method": "annotation_svd", "substitute": True, "substitute_for": SUBSTITUTE_FOR,
                   "features": list(features.columns[:len(GENE_MODEL_FEATURES)]) + ["chrom_<name> one-hot"]
                   + (["tf_<tf_id> promoter ChIP binding"] if chip_edges is not None else []),
                   "n_features": int(features.shape[1]), "n_tfs": features.attrs["n_tfs"],
                   "dropped_genes": features.attrs["dropped_genes"]}
    else:
        raise ValueError("build_promoter_prior needs promoters= (sequences) or locations= (gene models)")
    details.update(parameters=parameters, n_genes=int(len(vectors)), dim_used=int(vectors.shape[1]),
                   explained_variance_ratio_sum=vectors.attrs.get("explained_variance_ratio_sum"))
    details.update(info or {})
    human = standardise(vectors)
    return align_to_vocab("promoter", human, vocab, orthology=orthology, info=details), human


def bundle_sources() -> dict:
    """Manifest entry for the offline bundle's gene models (org.Hs.eg.db), for ``info={"sources": ...}``."""
    from ..inputs.sources import SOURCES

    return {"org_hs_eg_db": {**SOURCES["org_hs_eg_db"].provenance(), "table": "chromosome_locations (hg38)"}}
