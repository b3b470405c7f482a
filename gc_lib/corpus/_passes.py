"""The corpus builder's units of work, each run in a worker process: QC with the medians' histogram, the histogram
of the cells QC drops, a shard of tokens (the passes that plan and combine them: :mod:`gc_lib.corpus._schedule`).

Each task reads its own rows from disk (:func:`gc_lib.corpus._count_store.row_reader`) and receives everything else
as arguments (small per-column arrays), so tasks share no state and any number can run in parallel. A task
returns small results (per-cell metrics, a histogram, shard statistics); only the tokenising task writes,
and only through an atomic rename.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp

from ._buffers import BufferSets
from ._count_store import row_reader
from ._kernels_native import first_pass_kernels
from .medians import COUNTS_GRID, SCALED_GRID, MedianGrid, bin_lookup, empty_histogram
from .shards import ROW_GROUP_CELLS, shard_digest, shard_writer
from .tokenizer import SHARD_SCHEMA, TokenizedCells, rank_rows

#: cells read (and ranked and written) at a time inside a task, a multiple of the shard's group size: ~6 MB per CSR
#: array at 3,000 genes per cell instead of ~240 MB for a 10,000-cell chunk, so memory stays small and is reused;
#: reading measured 8.3 µs per cell in 1,024-cell pieces against 19.8 µs in whole chunks, and with two threads
#: 512-cell pieces ran 2–3 µs per cell faster than 1,024 (less time with one thread idle as a shard's pipeline
#: fills and drains; benchmarks/RESULTS.md, issue 18)
PIECE_CELLS = 2 * ROW_GROUP_CELLS


def _pieces(start: int, stop: int) -> list[tuple[int, int]]:
    """Rows ``[start, stop)`` as consecutive ``(a, b)`` ranges of at most :data:`PIECE_CELLS` rows."""
    return [(a, min(a + PIECE_CELLS, stop)) for a in range(start, stop, PIECE_CELLS)]


def qc_median_task(path: str, chunks: list[tuple[int, int]], is_mito: np.ndarray, is_counted: np.ndarray,
                   col_slot: np.ndarray, n_slots: int, grid: MedianGrid, library_size: float | None) -> dict:
    """Check rows of ``chunks`` hold counts, compute their QC metrics, and fill the histogram of
    :func:`histogram_task` with every non-empty cell's values: QC and the medians in one read of the rows.

    QC's rules are judged on a whole dataset's metrics, so which cells they drop is known only once every task has
    returned; the builder then takes those cells back out of the summed histogram (:func:`histogram_task` over them,
    subtracted), which re-reads only the dropped cells instead of every kept one.

    Returns ``{"chunks": [per chunk: start, total_counts, mito_counts, n_counted_genes], "hist": histogram}``, the
    histogram as :func:`sparse_histogram`.
    Raises ``ValueError`` naming the file and row of the first NaN, negative or non-integer value, or of the first
    empty cell (the AnnData contract; nothing has been written when this pass fails).
    """
    hist, add = _histogram_filler(col_slot, n_slots, grid, library_size)
    kernels = first_pass_kernels()  # chosen once per task, not per piece
    buffers: dict = {}  # one piece at a time: its arrays reused for the next
    results = []
    with row_reader(path) as read:
        for start, stop in chunks:
            parts = []
            for a, b in _pieces(start, stop):
                counts = read(a, b, buffers)
                indptr = counts.indptr.astype(np.int64)
                metrics = _piece_metrics(kernels, path, counts, indptr, a, is_mito, is_counted)
                add(counts, indptr, metrics[0] > 0)
                parts.append(metrics)
            results.append(_chunk_metrics(path, start, stop, parts))
    return {"chunks": results, "hist": sparse_histogram(hist)}


def _histogram_filler(col_slot: np.ndarray, n_slots: int, grid: MedianGrid, library_size: float | None) -> tuple:
    """A zeroed histogram (:func:`empty_histogram`) and ``add(counts, indptr, keep)``, which adds the non-zero values
    of the kept rows of a CSR piece (``indptr`` as int64) to it, column ``j`` going to slot ``col_slot[j]``."""
    hist, (table, first_exp) = empty_histogram(n_slots, grid), bin_lookup(grid)
    kernels = first_pass_kernels()

    def add(counts: sp.csr_matrix, indptr: np.ndarray, keep: np.ndarray) -> None:
        kernels.add_to_histogram(hist, counts.data, counts.indices, indptr, keep, col_slot, float(library_size or 0.0),
                                 grid.integer_mode, grid.n_exact, grid.log_lo, grid.bins_per_octave, table, first_exp)

    return hist, add


def _chunk_metrics(path: str, start: int, stop: int, parts: list[tuple]) -> dict:
    """The metrics of rows ``[start, stop)`` from those of its pieces; an empty cell raises ``ValueError``."""
    total, mito, n_counted = (np.concatenate(column) for column in zip(*parts))
    empty = np.flatnonzero(total == 0)
    if empty.size:
        raise ValueError(f"{path}: {empty.size} empty cells (zero total counts) in rows {start}-{stop}, first at "
                         f"row {start + int(empty[0])}; drop them first (gc_lib.inputs.conversion.to_contract does)")
    return {"start": start, "total_counts": total, "mito_counts": mito, "n_counted_genes": n_counted}


def _piece_metrics(kernels, path: str, counts: sp.csr_matrix, indptr: np.ndarray, start: int,
                   is_mito: np.ndarray, is_counted: np.ndarray) -> tuple:
    """Per-cell total, mitochondrial counts and counted genes of the rows read from ``start``, after checking the
    values (``kernels``: :func:`first_pass_kernels`)."""
    bad = kernels.first_invalid_value(counts.data)
    if bad >= 0:
        row = start + int(np.searchsorted(counts.indptr, bad, side="right")) - 1
        raise ValueError(f"{path}: row {row} holds {counts.data[bad]!r}; raw non-negative integer counts are "
                         f"required (NaN, negative and non-integer values are not counts)")
    return kernels.cell_metrics(counts.data, counts.indices, indptr, is_mito, is_counted)


def histogram_task(path: str, chunks: list[tuple[int, int, np.ndarray]], col_slot: np.ndarray, n_slots: int,
                   grid: MedianGrid, library_size: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The histogram (``grid.n_bins × n_slots``, :func:`empty_histogram`) of the non-zero values of the kept cells of
    several chunks (``(start, stop, keep)``), as :func:`sparse_histogram`: the builder gives it the cells QC dropped
    (:func:`qc_median_task`)."""
    hist, add = _histogram_filler(col_slot, n_slots, grid, library_size)
    buffers: dict = {}  # one piece at a time: its arrays reused for the next
    with row_reader(path) as read:
        for start, stop, keep in chunks:
            for a, b in _pieces(start, stop):
                counts = read(a, b, buffers)
                add(counts, counts.indptr.astype(np.int64), keep[a - start:b - start])
    return sparse_histogram(hist)


def sparse_histogram(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``hist``'s non-zero entries: their flat positions and counts, what a task sends back instead of the whole table.

    Why: a gene's values fill a few dozen of its 512 bins (~10 % of the table on the benchmark input), so the pair is
    a third of the dense table's bytes there, and far less for a small dataset or the cells QC dropped (a dense 41 MB
    table per task had cost 0.2 s for 189 dropped cells); the builder adds it into its table at those positions.
    """
    flat = np.flatnonzero(hist)
    positions = flat.astype(np.int32) if hist.size < 2**31 else flat
    return positions, hist.reshape(-1)[flat]


def tokenize_task(path: str, start: int, stop: int, keep: np.ndarray, col_token: np.ndarray,
                  col_median: np.ndarray, options: dict, dest: str) -> dict:
    """Tokenise the kept cells of rows ``[start, stop)`` and write them as one shard at ``dest`` (its suffix names
    the format).

    ``options``: ``n_top``, ``library_size``, ``n_tokens``, ``species``, ``dataset``, ``compression``, ``threads``
    (see :func:`_in_order`). Returns the shard's manifest entry (its digest taken as it is written).
    """
    stock = BufferSets()  # a piece's arrays go back to the stock once it is written

    def ranked(a: int, b: int) -> tuple[TokenizedCells, dict]:
        buffers = stock.take()
        cells = rank_rows(read(a, b, buffers), col_token, col_median, n_top=options["n_top"],
                          library_size=options["library_size"], n_tokens=options["n_tokens"],
                          keep=keep[a - start:b - start], row_offset=a, buffers=buffers)
        return cells, buffers

    n_cells = n_tokens = 0
    with row_reader(path) as read, shard_writer(dest, SHARD_SCHEMA, compression=options["compression"]) as shard:
        for cells, buffers in _in_order(ranked, _pieces(start, stop), options["threads"]):
            shard.write(cells.to_table(options["species"], options["dataset"]))
            n_cells, n_tokens = n_cells + len(cells.rows), n_tokens + int(cells.ids.size)
            stock.give(buffers)
    return shard_stats(dest, n_cells=n_cells, n_tokens=n_tokens, digest=shard.digest)


def _in_order(job: Callable[[int, int], Any], pieces: list[tuple[int, int]], threads: int) -> Iterator:
    """``job(a, b)`` of each piece, yielded in the pieces' order.

    One thread runs the jobs here in turn. With ``threads`` = k ≥ 2, k pool threads read and rank k pieces at once
    while the caller writes the finished ones; the ranking kernel and pyarrow's writers release the GIL, so reading,
    ranking and writing overlap (measured in benchmarks/RESULTS.md, issue 18). At most k + 1 pieces are in memory.
    """
    if threads == 1:
        yield from (job(a, b) for a, b in pieces)
        return
    with ThreadPoolExecutor(threads) as pool:
        running: deque = deque()
        try:
            for a, b in pieces:
                running.append(pool.submit(job, a, b))
                if len(running) > threads:
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
        finally:
            for future in running:
                future.cancel()


def shard_stats(dest: str, *, n_cells: int, n_tokens: int, digest: str | None = None) -> dict:
    """One shard's manifest entry; without ``digest`` (a shard finished by an interrupted run) the file is hashed."""
    return {"file": Path(dest).name, "cells": n_cells, "tokens": n_tokens, "xxh3_128": digest or shard_digest(dest)}


def warm_kernels() -> None:
    """Load every kernel with the argument types the tasks use (the C libraries, or numba's kernels compiled or
    loaded from its cache), so processes forked afterwards start with them ready."""
    kernels = first_pass_kernels()
    data, indices, indptr = np.ones(1, np.float32), np.zeros(1, np.int32), np.array([0, 1], np.int64)
    keep, flags = np.ones(1, bool), np.zeros(1, bool)
    kernels.first_invalid_value(data)
    kernels.cell_metrics(data, indices, indptr, flags, flags)
    for grid in (COUNTS_GRID, SCALED_GRID):
        kernels.add_to_histogram(empty_histogram(1, grid), data, indices, indptr, keep, np.zeros(1, np.int64), 0.0,
                                 grid.integer_mode, grid.n_exact, grid.log_lo, grid.bins_per_octave, *bin_lookup(grid))
    rank_rows(sp.csr_matrix(data.reshape(1, 1)), np.array([4], np.int32), np.ones(1), n_top=1, library_size=None,
              n_tokens=5)
