"""Where ``tokenize_files`` spends its time, stage by stage, beside the I/O floor measured in the same run (issue 18).

What: on the tokenizer benchmark's synthetic input (``benchmarks/tokenize.py``: 20,000 genes, 2,000–4,000 expressed
per cell, the same file and tokenizer), one process, the stages of the tokenising task for every piece of
``_passes.PIECE_CELLS`` cells (the unit it reads, ranks and appends to its 10,000-cell shard):

- ``read``: ``_count_store.row_reader``'s read of the piece (``indptr`` by h5py, ``data``/``indices`` straight from the
  file where the layout allows, and the CSR matrix; the store opened once per pass, as a task opens its input once);
- ``rank``: ``tokenizer.rank_rows`` (dtype checks, the top-k kernel, offsets), and within it ``kernel``, the kernel
  call alone on the same arrays (the kernel the tokenizer uses: the C one where built; ``kernel, numba`` the numba
  one beside it; ``kernel, 2 threads at once`` two pieces ranked by two threads at the same time, pair after pair,
  measured apart: :func:`kernel_two_threads`);
- ``arrow table``: ``TokenizedCells.to_table`` (the Arrow table of the shard);
- ``shard, Parquet`` and ``shard, Arrow IPC``: ``shards.write_shard`` of that table in each format (its xxh3-128
  digest taken as the bytes are written);
- ``digest``: the manifest's xxh3-128 of the finished shard (``shards.shard_digest``; the task takes the same digest
  while it writes, this shows its cost), and for comparison the ``sha256`` the manifest recorded before;
and the **floors** for the same pieces: ``read floor`` (the three CSR slices alone, no matrix; ``data`` and
``indices`` read as our reader reads them), ``write floor, raw`` (the shard's id, value and offset bytes written with
``ndarray.tofile``), ``write floor, Arrow IPC`` (the same Arrow table as an uncompressed Feather v2 file) and ``write
floor, Parquet flat`` (ids and values as two flat columns plus offsets, no dictionary). Also ``tokenize_files`` end
to end in one process on the same file, with each shard format, with one thread and with two (two shards at once, each
read, ranked and written by its own thread).
Why: the issue's target is within 1.5× of the I/O floor of the format used; this makes the ratio visible.
How::

    .venv/bin/python -P benchmarks/tokenize_profile.py [--cells 20000] [--repeats 3] [--workdir DIR]

Times are µs per cell, medians over ``--repeats`` passes over the file; each piece is read once untimed first, so
the read and its floor both find it in the page cache (a cold read measures the disk, not the code). Results:
printed, and ``tokenize_profile.json`` in the workdir.
"""
import argparse
import json
import os
import runpy
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from gc_lib.corpus import _rank_kernels
from gc_lib.corpus._count_store import describe_store, row_reader
from gc_lib.corpus._passes import PIECE_CELLS
from gc_lib.corpus._rank_native import kernel_name, ranking_kernel
from gc_lib.corpus.builder import tokenize_files
from gc_lib.corpus.shards import shard_digest, write_shard
from gc_lib.corpus.tokenizer import _token_bits, rank_rows
from gc_lib.inputs.fetch import sha256_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHUNK = PIECE_CELLS  # the unit the tokenising task reads, ranks and appends to its shard
floor_reader = runpy.run_path(str(HERE / "_io_floor.py"))["floor_reader"]  # the benchmark's floor, read alike


def column_tables(path: Path, tokenizer) -> tuple[np.ndarray, np.ndarray, int]:
    """The input's column tables as the kernels take them (int32 tokens, float64 medians), and its cells."""
    info = describe_store(path)
    col_token, col_median = tokenizer.column_tables(info.gene_ids, "human")
    return col_token.astype(np.int32), col_median.astype(np.float64), info.n_cells


def stage_times(path: Path, tokenizer, scratch: Path) -> dict[str, float]:
    """Seconds per stage for one pass over the file, piece by piece as the tokenising task does it (each piece's
    shard written as a file of its own here)."""
    col_token, col_median, n_cells = column_tables(path, tokenizer)
    times = dict.fromkeys(["read", "rank", "kernel", "kernel, numba", "arrow table", "shard, Parquet",
                           "shard, Arrow IPC", "digest", "sha256 (before)", "read floor", "write floor, raw",
                           "write floor, Arrow IPC", "write floor, Parquet flat"], 0.0)
    # opened once per pass, as a task opens its input
    with row_reader(path) as read, h5py.File(path, "r") as store, open(path, "rb") as raw:
        floor_read = floor_reader(store, raw.fileno())
        for start in range(0, n_cells, CHUNK):
            _piece_stages(times, read, floor_read, start, min(start + CHUNK, n_cells), tokenizer, col_token,
                          col_median, scratch)
    return times


def _piece_stages(times: dict, read, floor_read, start: int, stop: int, tokenizer, col_token, col_median,
                  scratch: Path) -> None:
    """Add one piece's seconds per stage to ``times``."""
    floor_read(start, stop)  # untimed: the piece in the page cache for the read and its floor alike
    counts = _timed(times, "read", read, start, stop)
    cells = _timed(times, "rank", rank_rows, counts, col_token, col_median, n_top=tokenizer.n_top,
                   library_size=tokenizer.library_size, n_tokens=len(tokenizer.vocab), row_offset=start)
    _timed(times, "kernel", _kernel_only, ranking_kernel(), counts, col_token, col_median, tokenizer)
    _timed(times, "kernel, numba", _kernel_only, _rank_kernels.tokenize_csr, counts, col_token, col_median, tokenizer)
    table = _timed(times, "arrow table", cells.to_table, "human", "synthetic")
    _timed(times, "shard, Parquet", write_shard, table, scratch / f"shard-{start}.parquet")
    shard = _timed(times, "shard, Arrow IPC", write_shard, table, scratch / f"shard-{start}.arrow")
    _timed(times, "digest", shard_digest, shard)
    _timed(times, "sha256 (before)", sha256_file, shard)
    _timed(times, "read floor", floor_read, start, stop)
    _timed(times, "write floor, raw", _write_raw, cells, scratch / f"raw-{start}.bin")
    _timed(times, "write floor, Arrow IPC", feather.write_feather, table, scratch / f"ipc-{start}.arrow",
           compression="uncompressed")
    _timed(times, "write floor, Parquet flat", _write_flat_parquet, cells, scratch / f"flat-{start}.parquet")


def kernel_two_threads(path: Path, tokenizer) -> dict[str, float]:
    """Seconds of the ranking kernel with two threads ranking two pieces at once, pair after pair over the file: what
    the machine's two cores give the kernel together (against ``kernel``, one thread). Measured apart from the
    stages, after the written files are flushed (``os.sync``), so that no writeback of them shares the cores."""
    col_token, col_median, n_cells = column_tables(path, tokenizer)
    os.sync()
    seconds = 0.0
    with row_reader(path) as read, ThreadPoolExecutor(2) as pair:
        for start in range(0, n_cells, 2 * CHUNK):
            pieces = [read(a, min(a + CHUNK, n_cells)) for a in range(start, min(start + 2 * CHUNK, n_cells), CHUNK)]
            began = time.perf_counter()
            list(pair.map(lambda counts: _kernel_only(ranking_kernel(), counts, col_token, col_median, tokenizer),
                          pieces))
            seconds += time.perf_counter() - began
    return {"kernel, 2 threads at once": seconds}


def _timed(times: dict, name: str, fn, *args, **kwargs):
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    times[name] += time.perf_counter() - began
    return result


def _kernel_only(kernel, counts, col_token, col_median, tokenizer) -> int:
    indptr = counts.indptr.astype(np.int64)
    keep = np.ones(counts.shape[0], dtype=bool)
    capacity = int(np.minimum(np.diff(indptr), tokenizer.n_top).sum())
    ids, values = np.empty(capacity, np.int32), np.empty(capacity, np.float32)
    lengths = np.empty(counts.shape[0], np.int32)
    return kernel(counts.data, counts.indices, indptr, keep, col_token, col_median, tokenizer.n_top,
                  tokenizer.library_size or 0.0, _token_bits(len(tokenizer.vocab)), ids, values, lengths)


def _write_raw(cells, dest: Path) -> None:
    with open(dest, "wb") as f:
        for array in (cells.ids, cells.values, cells.offsets):
            array.tofile(f)


def _write_flat_parquet(cells, dest: Path) -> None:
    flat = pa.table({"input_ids": cells.ids, "values": cells.values})
    pq.write_table(flat, dest, compression="none", use_dictionary=False)
    pq.write_table(pa.table({"offsets": cells.offsets}), dest.with_suffix(".offsets.parquet"), compression="none")


END_TO_END = {"tokenize_files, end to end, Parquet": {"shard_format": "parquet"},
              "tokenize_files, end to end, Arrow IPC": {"shard_format": "arrow"},
              "tokenize_files, end to end, Parquet, 2 threads": {"shard_format": "parquet", "threads": 2},
              "tokenize_files, end to end, Arrow IPC, 2 threads": {"shard_format": "arrow", "threads": 2}}


def end_to_end(path: Path, tokenizer, scratch: Path) -> dict[str, float]:
    """Seconds of ``tokenize_files`` in this process (one worker), per setting of :data:`END_TO_END`."""
    times = {}
    for name, options in END_TO_END.items():
        out = scratch / "tokenized"
        shutil.rmtree(out, ignore_errors=True)
        began = time.perf_counter()
        tokenize_files([path], out, tokenizer, n_workers=1, progress=False, **options)
        times[name] = time.perf_counter() - began
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20_000, help="cells of the input (default 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the file (default 3)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench" / "tokenize")
    args = parser.parse_args()
    bench = runpy.run_path(str(HERE / "tokenize.py"), run_name="tokenize_bench")  # its input and tokenizer
    path, meta = bench["ensure_input"](args.workdir, args.cells, bench["DENSE"])
    tokenizer = bench["our_tokenizer"](bench["write_dictionaries"](args.workdir / "dictionaries"))
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
            runs.append(stage_times(path, tokenizer, Path(scratch)) | kernel_two_threads(path, tokenizer)
                        | end_to_end(path, tokenizer, Path(scratch)))
    per_cell = {k: float(np.median([r[k] for r in runs])) / args.cells * 1e6 for k in runs[0]}
    result = {"cells": args.cells, "input": meta, "repeats": args.repeats,
              "ranking_kernel": kernel_name(ranking_kernel()), "us_per_cell": per_cell}
    (args.workdir / "tokenize_profile.json").write_text(json.dumps(result, indent=1))
    print(f"ranking kernel: {result['ranking_kernel']}\n\n| stage | µs per cell |\n|---|---|")
    for name, value in per_cell.items():
        print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
