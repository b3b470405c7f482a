"""Build the tokenised pretraining corpus from contract ``.h5ad``/``.zarr`` files (DESIGN.md §1), streaming.

:func:`build_corpus` reads the inputs twice, each time in chunks of ``chunk_size`` cells spread over ``n_workers``
processes, so peak memory depends on the chunk size and the number of genes, never on the number of cells
(the passes as run: :mod:`gc_lib.corpus._schedule`; their tasks: :mod:`gc_lib.corpus._passes`):

1. **QC and medians** — checks the counts (NaN, negative, non-integer, empty cells: ``ValueError`` before anything
   is written), computes per-cell metrics and applies the per-dataset rules of :mod:`gc_lib.corpus.qc`; in the same
   read, every gene's corpus-wide non-zero median (:mod:`gc_lib.corpus.medians`) over the kept cells (the cells QC
   drops are read once more and taken out). The medians fix the vocabulary: genes expressed in at least one kept
   cell (:mod:`gc_lib.corpus.vocab`), plus any ``extra_genes`` that none expresses, with a median by rule
   (:mod:`gc_lib.corpus.extra_genes`);
2. **tokens** — each kept cell's top-``n_top`` genes (:mod:`gc_lib.corpus.tokenizer`), one shard per chunk
   (Parquet, or Arrow IPC with ``shard_format="arrow"``: :mod:`gc_lib.corpus.shards`).

Output directory::

    manifest.json      sources + sha256, QC counts, gene report, extra genes, parameters, vocabulary hash, shards
                       (last written)
    vocab.json  medians.parquet  tokenizer.json      the tokenizer (Tokenizer.load(out_dir))
    qc/<dataset>.parquet  qc_report.parquet  genes_report.parquet
    shards/<dataset>-<first row>.parquet (or .arrow)
    build.json         what is being built, so an interrupted build resumes only into the same build

Every file is written atomically. Rerunning after an interruption reuses the finished passes and shards
and writes only what is missing; a finished corpus is returned as it is unless ``force=True``.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import __version__
from ..core.atomic import write_json, write_parquet
from . import _schedule as schedule
from ._count_store import StoreInfo, describe_store
from .extra_genes import add_extra_genes, check_extra_genes, table_hash
from .medians import grid_for
from .qc import QCConfig
from .shards import DEFAULT_COMPRESSION, check_format, read_shard
from .tokenizer import Tokenizer
from .vocab import SPECIAL_TOKENS, build_vocabulary, strip_version


@dataclass(frozen=True)
class CorpusConfig:
    n_top: int = 2048                  # tokens per cell: its top-N genes by normalised value (paper: 2048)
    library_size: float | None = None  # scale counts to this total per cell first (published code: off)
    chunk_size: int = 10_000           # cells per task and per shard (read in pieces of _passes.PIECE_CELLS)
    compression: str = DEFAULT_COMPRESSION  # codec of the shards ("none", "zstd", "lz4"; Parquet also "snappy")
    shard_format: str = "parquet"       # "parquet" or "arrow" (Arrow IPC: 5–7× faster to write; gc_lib.corpus.shards)
    threads: int = 1                   # threads per process: with n_workers=1, tasks (shards) at once (same output)
    qc: QCConfig = field(default_factory=QCConfig)  # per-dataset cell QC (gc_lib.corpus.qc)

    def __post_init__(self):
        check_format(self.shard_format, self.compression)
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")


@dataclass(frozen=True)
class GeneAnnotation:
    """Per gene (unversioned Ensembl ID): biotype, for the QC gene-count rule; mouse → human orthologs."""
    biotype: pd.Series                 # index gene_id → biotype, gc_lib.inputs.genes naming ("protein_coding", …)
    orthologs: pd.DataFrame            # mouse_id, human_id, homology_type (one row per mouse gene)


def bundle_annotation() -> GeneAnnotation:
    """The annotation of the offline bundle: HGNC/MGI biotypes and Ensembl orthologs (:mod:`gc_lib.inputs.genes`)."""
    from ..inputs import genes
    tables = [genes.gene_table(s)[["ensembl_id", "biotype"]] for s in ("human", "mouse")]
    biotype = pd.concat(tables).drop_duplicates("ensembl_id").set_index("ensembl_id")["biotype"]
    return GeneAnnotation(biotype=biotype, orthologs=genes.mouse_to_human())


# ------------------------------------------------------------------------------------------------------
# The build
# ------------------------------------------------------------------------------------------------------

def _build_key(infos: list[StoreInfo], config: CorpusConfig, extra: pd.DataFrame | None) -> dict:
    sources = [{"path": str(i.path.resolve()), "bytes": _size(i.path), "mtime_ns": i.path.stat().st_mtime_ns}
               for i in infos]
    settings = asdict(config)
    del settings["threads"]  # how fast, not what: the same shards with any number of threads
    if settings["shard_format"] == "parquet":  # absent for the default, so corpora built before the option stay valid
        del settings["shard_format"]
    key = {"sources": sources, "config": json.loads(json.dumps(settings)), "gc_lib": __version__}
    if extra is not None:  # absent without extra genes, so corpora built before the option stay valid
        key["extra_genes"] = {"genes": len(extra), "sha256": table_hash(extra)}
    return key


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _prepare_out_dir(out_dir: Path, key: dict, force: bool) -> None:
    """Make ``out_dir`` ready for this build: empty, or holding an unfinished run of the same build."""
    if out_dir.exists() and any(out_dir.iterdir()):
        state = json.loads((out_dir / "build.json").read_text()) if (out_dir / "build.json").exists() else None
        if force:
            shutil.rmtree(out_dir)
        elif state is None:
            raise ValueError(f"{out_dir} is not empty and holds no corpus; choose another directory")
        elif state != key:
            raise ValueError(f"{out_dir} holds a corpus built from other inputs or parameters; "
                             f"pass force=True to rebuild it, or choose another directory")
    for leftover in list(out_dir.rglob(".*.tmp*")) if out_dir.exists() else []:
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()  # debris of a killed run


def build_corpus(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 config: CorpusConfig | None = None, annotation: GeneAnnotation | None = None,
                 extra_genes: pd.DataFrame | None = None, n_workers: int | None = None, force: bool = False,
                 progress: bool = True) -> dict:
    """Build (or resume, or return) the corpus of contract ``.h5ad``/``.zarr`` ``inputs`` in ``out_dir``.

    One input is one dataset (``obs["dataset"]`` or its file name) of one species. ``annotation`` gives the
    gene biotypes and orthologs (default: :func:`bundle_annotation`). ``extra_genes`` (``gene_id, species,
    symbol``, e.g. :func:`gc_lib.inputs.genes.tf_tokens`) become tokens even where no kept cell expresses them,
    with a median by the rule of :mod:`gc_lib.corpus.extra_genes`; it is part of the build key, so a corpus
    built with other extra genes is not reused. ``n_workers`` processes (default: all cores; 1 runs in this
    process, ``config.threads`` tasks at once). Returns the manifest (also ``out_dir/manifest.json``). Bad input
    raises a ``ValueError`` that names the file and problem, before anything is written.
    """
    config = config or CorpusConfig()
    extra = check_extra_genes(extra_genes)
    out_dir = Path(out_dir)
    n_workers = n_workers or os.cpu_count() or 1
    if not inputs:
        raise ValueError("no inputs: give one or more contract .h5ad/.zarr files")
    infos = [describe_store(p) for p in inputs]
    names = [i.dataset for i in infos]
    if len(set(names)) != len(names):
        raise ValueError(f"two inputs share a dataset name: {sorted({n for n in names if names.count(n) > 1})}")
    key = _build_key(infos, config, extra)
    if out_dir.exists() and (out_dir / "build.json").exists() and (out_dir / "manifest.json").exists() \
            and not force and json.loads((out_dir / "build.json").read_text()) == key:
        return json.loads((out_dir / "manifest.json").read_text())
    # the sources' sha256 in a thread here, not in a worker that the first pass waits for; started first, so that it
    # runs while this process warms the compiled kernels and loads the annotation on one core
    parallel = schedule.tasks_at_once(n_workers, config.threads)
    with schedule.source_digests([str(i.path) for i in infos]) as source_sha256, \
            schedule.executor(n_workers, config.threads) as pool:
        annotation = annotation or bundle_annotation()
        candidates = pd.Index(sorted({g for i in infos for g in strip_version(i.gene_ids)}))
        metrics, qc_report, (median, n_nonzero, exact) = schedule.qc_median_pass(  # raises before any write
            pool, infos, candidates, config, annotation, parallel, progress)
        _prepare_out_dir(out_dir, key, force)
        write_json(key, out_dir / "build.json")
        for info, table in zip(infos, metrics):
            write_parquet(table, out_dir / "qc" / f"{schedule.safe_name(info.dataset)}.parquet")
        write_parquet(qc_report, out_dir / "qc_report.parquet")
        keeps = [m["keep"].to_numpy() for m in metrics]
        tokenizer, gene_report, extra_report = _make_tokenizer(infos, candidates, median, n_nonzero, annotation,
                                                               config, extra)
        gene_stats = _gene_stats(tokenizer, candidates, n_nonzero, exact)
        tokenizer.save(out_dir, gene_stats=gene_stats)
        write_parquet(gene_report, out_dir / "genes_report.parquet")

        shards = schedule.token_pass(pool, infos, keeps, tokenizer, config, out_dir / "shards", n_workers, progress)
        checksums = source_sha256()
    manifest = _manifest(infos, checksums, config, qc_report, gene_report, tokenizer, shards, gene_stats,
                         extra_report)
    write_json(manifest, out_dir / "manifest.json")
    return json.loads((out_dir / "manifest.json").read_text())


def _make_tokenizer(infos, candidates, median, n_nonzero, annotation, config, extra):
    species_of = {g: i.species for i in infos for g in strip_version(i.gene_ids)}
    symbol_of = {g: s for i in infos for g, s in zip(strip_version(i.gene_ids), i.symbols)}
    is_expressed = n_nonzero > 0
    expressed = candidates[is_expressed]
    genes = pd.DataFrame({"gene_id": expressed, "species": [species_of[g] for g in expressed],
                          "symbol": [symbol_of[g] for g in expressed], "median": median[is_expressed]})
    genes, extra_report = add_extra_genes(genes, extra)
    vocab = build_vocabulary(genes, annotation.orthologs)
    medians = np.full(len(vocab), np.nan)
    medians[len(SPECIAL_TOKENS):] = genes.set_index("gene_id")["median"].reindex(vocab.genes["gene_id"]).to_numpy()
    added = set(genes.loc[genes["extra"], "gene_id"])
    rows = []
    for i in infos:
        tokens = vocab.encode(i.gene_ids)
        rows.append({"dataset": i.dataset, "species": i.species, "genes": len(i.gene_ids),
                     "in_vocabulary": int((tokens >= 0).sum()),
                     "extra_not_expressed": int(np.isin(strip_version(i.gene_ids), list(added)).sum()),
                     "dropped_not_expressed": int((tokens < 0).sum()),
                     "with_human_ortholog": _with_ortholog(vocab, i) if i.species == "mouse" else None})
    report = pd.DataFrame(rows)
    tokenizer = Tokenizer(vocab, medians, n_top=config.n_top, library_size=config.library_size)
    return tokenizer, report, extra_report


def _with_ortholog(vocab, info: StoreInfo) -> int:
    tokens = vocab.encode(info.gene_ids)
    return int(vocab.genes["human_ortholog"].reindex(tokens[tokens >= 0]).notna().sum())


def _gene_stats(tokenizer: Tokenizer, candidates: pd.Index, n_nonzero, exact) -> pd.DataFrame:
    """Per gene token: cells that express it, whether its median is exact, and whether it is an extra gene (no
    kept cell expresses it, its median is the rule's); extra genes absent from every input count 0 cells."""
    ids = tokenizer.vocab.genes["gene_id"]
    count = pd.Series(n_nonzero, index=candidates).reindex(ids, fill_value=0).to_numpy(dtype=np.int64)
    is_exact = pd.Series(exact, index=candidates).reindex(ids, fill_value=False).to_numpy(dtype=bool)
    return pd.DataFrame({"n_nonzero": count, "median_exact": is_exact, "extra": count == 0})


def _manifest(infos, checksums, config, qc_report, gene_report, tokenizer, shards, gene_stats, extra_report) -> dict:
    in_vocab = tokenizer.vocab.genes["species"].value_counts().to_dict()
    return {
        "format": "gc_lib.corpus/1", "gc_lib": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": json.loads(json.dumps(asdict(config))),
        "median_grid": grid_for(config.library_size).as_dict(),
        "medians_exact": int(gene_stats["median_exact"].sum()),
        "medians_approximate": int((~gene_stats["median_exact"] & ~gene_stats["extra"]).sum()),
        "medians_by_rule": int(gene_stats["extra"].sum()),
        "extra_genes": extra_report,
        "sources": [{"dataset": i.dataset, "species": i.species, "path": str(i.path), "sha256": checksums[str(i.path)],
                     "cells": i.n_cells, "genes": len(i.gene_ids), "counts": i.counts_location} for i in infos],
        "qc": qc_report.replace({np.nan: None}).to_dict(orient="records"),
        "genes": gene_report.replace({np.nan: None}).to_dict(orient="records"),
        "vocabulary": {"hash": tokenizer.vocab.hash, "tokens": len(tokenizer.vocab),
                       "special_tokens": list(SPECIAL_TOKENS), "genes_per_species": in_vocab},
        "shards": shards,
        "cells": int(sum(s["cells"] for s in shards)), "tokens": int(sum(s["tokens"] for s in shards)),
    }


def tokenize_files(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, tokenizer: Tokenizer, *,
                   chunk_size: int = 10_000, compression: str = DEFAULT_COMPRESSION, shard_format: str = "parquet",
                   threads: int = 1, n_workers: int | None = None, progress: bool = True) -> dict:
    """Tokenise new contract ``.h5ad``/``.zarr`` files with an existing tokenizer (e.g. a corpus's, for
    inference): every cell, no QC, the same kernel and shard format as :func:`build_corpus`.

    Writes ``out_dir/shards/*.parquet`` (``*.arrow`` with ``shard_format="arrow"``) and ``out_dir/manifest.json``
    (vocabulary hash, per-input genes in the vocabulary, shards); returns the manifest. ``n_workers`` processes,
    each with ``threads`` threads; with ``n_workers=1``, this process writes ``threads`` shards at once
    (:func:`gc_lib.corpus._schedule.executor`). Bad input raises ``ValueError`` before anything is written.
    """
    out_dir = Path(out_dir)
    infos = [describe_store(p) for p in inputs]
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty; choose a new directory for the tokenised files")
    config = CorpusConfig(n_top=tokenizer.n_top, library_size=tokenizer.library_size, chunk_size=chunk_size,
                          compression=compression, shard_format=shard_format, threads=threads)
    keeps = [np.ones(i.n_cells, dtype=bool) for i in infos]
    n_workers = n_workers or os.cpu_count() or 1
    with schedule.executor(n_workers, threads) as pool:
        shards = schedule.token_pass(pool, infos, keeps, tokenizer, config, out_dir / "shards", n_workers, progress)
    manifest = {"format": "gc_lib.tokenized/1", "gc_lib": __version__, "vocabulary_hash": tokenizer.vocab.hash,
                "n_top": tokenizer.n_top, "library_size": tokenizer.library_size,
                "sources": [{"dataset": i.dataset, "path": str(i.path), "cells": i.n_cells,
                             **tokenizer.coverage(i.gene_ids, i.species)} for i in infos],
                "shards": shards, "cells": int(sum(s["cells"] for s in shards))}
    write_json(manifest, out_dir / "manifest.json")
    return manifest


def shard_paths(out_dir: str | os.PathLike) -> list[Path]:
    """The corpus's shards in manifest order (a clear error if the corpus is unfinished)."""
    out_dir = Path(out_dir)
    if not (out_dir / "manifest.json").exists():
        raise FileNotFoundError(f"{out_dir} holds no finished corpus (no manifest.json); run build_corpus")
    manifest = json.loads((out_dir / "manifest.json").read_text())
    return [out_dir / "shards" / s["file"] for s in manifest["shards"]]


def read_corpus(out_dir: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The whole corpus as one DataFrame (for small corpora and notebooks; stream shards for large ones)."""
    tables = [read_shard(p, columns) for p in shard_paths(out_dir)]
    return pa.concat_tables(tables).to_pandas()
