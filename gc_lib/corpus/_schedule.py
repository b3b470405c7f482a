"""The corpus builder's passes as its own process runs them: which tasks read which rows, on which executor, and how
their results combine. The tasks themselves, run in the workers, are in :mod:`gc_lib.corpus._passes`.

Two reads of every input: QC metrics and the median histogram together (:func:`qc_median_pass`; the cells QC drops
are read once more, to take them out of the histogram), then the tokens (:func:`token_pass`).
"""
from __future__ import annotations

import itertools
import multiprocessing
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..inputs.fetch import DigestStopped, sha256_tree
from . import _passes as corpus_tasks
from ._count_store import StoreInfo
from .medians import grid_for, medians_from_histogram
from .qc import COUNTED_BIOTYPES, MITO_PREFIX, apply_qc
from .shards import SHARD_FORMATS, read_shard
from .tokenizer import Tokenizer
from .vocab import strip_version


class _InlineExecutor(Executor):
    """Runs each task at submission: ``n_workers=1`` without process start-up, and readable tracebacks."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)
        return future


def executor(n_workers: int, threads: int = 1) -> Executor:
    """Where the passes run their tasks: ``n_workers`` processes; for one, this process, its tasks in turn or
    ``threads`` of them at once, each in a thread (the kernels, the reads and the shard writers release the GIL).

    Why whole tasks per thread in one process: each thread then reads, ranks and writes its own shard, so the
    writing — Parquet's encoder above all — runs on every core, where a single task pipelined over its threads
    (:func:`gc_lib.corpus._passes.tokenize_task`) writes on one, and the threads never wait for each other's pieces
    (benchmarks/RESULTS.md, issue 18, ninth pass).
    """
    if n_workers <= 1:
        return ThreadPoolExecutor(threads) if threads > 1 else _InlineExecutor()
    # fork where the OS has it: workers start in milliseconds with the kernels already compiled (warmed here),
    # instead of re-importing the stack for seconds; tasks open their own files, so no HDF5 handle is shared
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods:
        corpus_tasks.warm_kernels()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(n_workers, mp_context=context)


def tasks_at_once(n_workers: int, threads: int) -> int:
    """How many tasks :func:`executor` ``(n_workers, threads)`` runs at once: its processes, or this process's
    threads."""
    return n_workers if n_workers > 1 else max(1, threads)


def task_threads(n_workers: int, threads: int, n_tasks: int) -> int:
    """Threads for each of ``n_tasks`` tokenising tasks: in worker processes, each task pipelines over the
    ``threads`` of its process; in this process the threads run whole tasks (:func:`executor`), and only tasks
    fewer than the threads share the rest (one shard alone gets them all)."""
    if n_workers > 1:
        return threads
    return max(1, threads // max(1, min(threads, n_tasks)))


@contextmanager
def source_digests(paths: list[str]) -> Iterator[Callable[[], dict[str, str]]]:
    """Hash ``paths`` (sha256; of every file of a ``.zarr`` directory) in a thread while the block runs, and yield a
    function that returns ``{path: sha256}`` once hashing is done.

    Hashing releases the GIL, so it runs beside whatever this process does (the builder starts it before warming its
    kernels on one core). If the block raises, the hashing stops at its next 1 MB instead of finishing first: an
    input's bad value found in the first pass should not wait a minute for a 100 GB input's hash.
    """
    stop = threading.Event()

    def hash_all() -> dict[str, str] | None:
        try:
            return {path: sha256_tree(path, stop=stop) for path in paths}
        except DigestStopped:
            return None

    with ThreadPoolExecutor(1) as hasher:
        digests = hasher.submit(hash_all)
        try:
            yield digests.result
        except BaseException:
            stop.set()
            raise


def _results(pool: Executor, calls: list[tuple], desc: str, progress: bool, parallel: int) -> Iterator[tuple]:
    """Run ``(fn, *args)`` calls on ``pool`` and yield ``(index, result)`` as each finishes; the first error is raised.

    At most ``2 × parallel`` calls (``parallel``: the tasks ``pool`` runs at once) are submitted and not yet
    yielded, so a caller that folds each result in (a histogram of 512 × all genes per task) holds a few at a time,
    not one per task — a corpus of hundreds of datasets would otherwise keep hundreds of histograms alive until the
    last task ends.
    """
    waiting = iter(enumerate(calls))
    pending: dict[Future, int] = {}

    def submit_next() -> None:
        for index, call in itertools.islice(waiting, 1):
            pending[pool.submit(*call)] = index

    for _ in range(2 * max(1, parallel)):
        submit_next()
    with tqdm(total=len(calls), desc=desc, disable=not progress, leave=False) as bar:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            future = min(done, key=pending.__getitem__)  # one at a time, so no finished batch piles up
            index = pending.pop(future)
            result = future.result()
            del done, future
            bar.update()
            submit_next()
            yield index, result
            del result


def chunks(n_cells: int, chunk_size: int) -> list[tuple[int, int]]:
    """Rows ``[0, n_cells)`` as consecutive ``(start, stop)`` chunks of at most ``chunk_size`` rows."""
    return [(s, min(s + chunk_size, n_cells)) for s in range(0, n_cells, chunk_size)]


def safe_name(name: str) -> str:
    """A dataset name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _groups(items: list, n_groups: int) -> list[list]:
    """``items`` in at most ``n_groups`` consecutive groups of near-equal size (none empty; none at all for none)."""
    if not items:
        return []
    n_groups = max(1, min(len(items), n_groups))
    return [[items[k] for k in part] for part in np.array_split(np.arange(len(items)), n_groups)]


def _gene_masks(info: StoreInfo, annotation) -> tuple[np.ndarray, np.ndarray]:
    is_mito = np.char.startswith(info.symbols.astype(str), MITO_PREFIX[info.species])
    biotype = annotation.biotype.reindex(strip_version(info.gene_ids)).to_numpy()
    return is_mito, np.isin(biotype, COUNTED_BIOTYPES)


def qc_median_pass(pool, infos: list[StoreInfo], candidates: pd.Index, config, annotation, parallel: int,
                   progress: bool) -> tuple[list[pd.DataFrame], pd.DataFrame, tuple]:
    """Every cell's QC metrics and keep flag (one table per input), the QC report, and the non-zero medians of the
    ``candidates`` genes over the kept cells (:func:`gc_lib.corpus.medians.medians_from_histogram`'s triple).

    One read of each input fills both (:func:`gc_lib.corpus._passes.qc_median_task`, in about ``parallel`` tasks,
    each returning one histogram); the cells QC drops are then read again and their values subtracted, so the
    histogram holds exactly the kept cells' values (counts are integers: nothing is lost in the subtraction).
    """
    grid = grid_for(config.library_size)
    total_cells = sum(info.n_cells for info in infos)
    n_tasks = [round(parallel * info.n_cells / total_cells) for info in infos]  # each input's share of the workers
    masks = [_gene_masks(info, annotation) for info in infos]
    # each column's candidate (-1: none, ignored), so that every task's histogram has the candidates' columns
    slots = [candidates.get_indexer(strip_version(info.gene_ids)).astype(np.int64) for info in infos]
    calls, owners = [], []
    for i, info in enumerate(infos):
        for group in _groups(chunks(info.n_cells, config.chunk_size), n_tasks[i]):
            calls.append((corpus_tasks.qc_median_task, str(info.path), group, *masks[i], slots[i], len(candidates),
                          grid, config.library_size))
            owners.append(i)
    hist = np.zeros((grid.n_bins, len(candidates)), dtype=np.int64)
    flat_hist = hist.reshape(-1)  # the tasks send (flat positions, counts): _passes.sparse_histogram
    parts: list[list[dict]] = [[] for _ in infos]
    for index, result in _results(pool, calls, "QC and medians", progress, parallel):
        positions, counts = result["hist"]
        flat_hist[positions] += counts  # each part's positions are distinct
        parts[owners[index]].extend(result["chunks"])
    metrics, reports = [], []
    for info, owned, (is_mito, _) in zip(infos, parts, masks):
        table, report = _qc_table(owned, config, has_mito_genes=bool(is_mito.any()))
        metrics.append(table)
        reports.append({"dataset": info.dataset, "species": info.species} | report)
    calls = []
    for info, table, slot, n in zip(infos, metrics, slots, n_tasks):
        dropped = _row_runs(np.flatnonzero(~table["keep"].to_numpy()))
        for group in _groups(dropped, n):
            calls.append((corpus_tasks.histogram_task, str(info.path), group, slot, len(candidates), grid,
                          config.library_size))
    for _, (positions, counts) in _results(pool, calls, "QC: dropped cells", progress, parallel):
        flat_hist[positions] -= counts  # each part's positions are distinct
    return metrics, pd.DataFrame(reports), medians_from_histogram(hist, grid)


def _qc_table(chunk_metrics: list[dict], config, *, has_mito_genes: bool) -> tuple[pd.DataFrame, dict]:
    """One input's per-cell QC table (row, metrics, keep) from its chunks' metrics, and its QC report row."""
    chunk_metrics = sorted(chunk_metrics, key=lambda part: part["start"])
    total = np.concatenate([p["total_counts"] for p in chunk_metrics])
    table = pd.DataFrame({"row": np.arange(total.size), "total_counts": total,
                          "mito_fraction": np.concatenate([p["mito_counts"] for p in chunk_metrics]) / total,
                          "n_counted_genes": np.concatenate([p["n_counted_genes"] for p in chunk_metrics])})
    keep, report = apply_qc(table, config.qc, has_mito_genes=has_mito_genes)
    table["keep"] = keep
    return table, report


def _row_runs(rows: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Ascending ``rows`` as :func:`gc_lib.corpus._passes.histogram_task`'s chunks: one ``(start, stop, keep)`` per
    run of consecutive rows, every row of it kept."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts, stops = rows[np.r_[0, breaks]], rows[np.r_[breaks - 1, rows.size - 1]] + 1
    return [(int(a), int(b), np.ones(b - a, dtype=bool)) for a, b in zip(starts, stops)]


def token_pass(pool, infos: list[StoreInfo], keeps: list[np.ndarray], tokenizer: Tokenizer, config, shard_dir: Path,
               n_workers: int, progress: bool) -> list[dict]:
    """Tokenise the kept cells of every input, one shard per chunk (shards already there, finished by an
    interrupted run, are kept), on ``pool`` = :func:`executor` ``(n_workers, config.threads)``; the shards' manifest
    entries, sorted by file name."""
    calls, existing, every_options = [], [], []
    for info, keep in zip(infos, keeps):
        col_token, col_median = tokenizer.column_tables(info.gene_ids, info.species)
        options = {"n_top": config.n_top, "library_size": config.library_size, "n_tokens": len(tokenizer.vocab),
                   "species": info.species, "dataset": info.dataset, "compression": config.compression}
        every_options.append(options)
        for start, stop in chunks(info.n_cells, config.chunk_size):
            dest = shard_dir / f"{safe_name(info.dataset)}-{start:010d}{SHARD_FORMATS[config.shard_format]}"
            if dest.exists():  # finished by an interrupted run (shards appear only complete)
                existing.append((dest, int(keep[start:stop].sum())))
                continue
            calls.append((corpus_tasks.tokenize_task, str(info.path), start, stop, keep[start:stop], col_token,
                          col_median, options, str(dest)))
    for options in every_options:  # known once the shards left to write are
        options["threads"] = task_threads(n_workers, config.threads, len(calls))
    done = [corpus_tasks.shard_stats(str(d), n_cells=n, n_tokens=_count_tokens(d)) for d, n in existing]
    parallel = tasks_at_once(n_workers, config.threads)
    written = [result for _, result in _results(pool, calls, "tokens", progress, parallel)]
    return sorted(done + written, key=lambda s: s["file"])


def _count_tokens(shard: Path) -> int:
    return int(read_shard(shard, columns=["length"])["length"].to_numpy().sum())
