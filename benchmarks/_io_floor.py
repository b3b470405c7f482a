"""The I/O floor of the tokenizer benchmark (``tokenize.py``): reading the input's rows and writing our shards' bytes
in a shard format, nothing else, with one thread or several.

What: the input's CSR slices read in the tokenising task's pieces (``PIECE_CELLS``) as our reader reads them
(``_count_store.range_reader``: ``preadv`` of the stored bytes where the layout allows) into buffers allocated once,
and each piece's table appended to one file per ``chunk`` cells by the format's plain writer. The tables are made
by our ranking before the clock starts (all of them: ~16 KB per cell, held in memory), so the timed part holds only
the reads and the writes. With ``threads`` = k, k threads each take whole chunks (one file each), as ``tokenize_files``
with ``n_workers=1, threads=k`` takes whole shards: the floor a run of ours with the same threads is compared with.
Why: issue 18's target is a ratio to this floor; one thread is the issue's definition, the floor with as many threads
as the run is the fair one for a run that writes on several cores (Parquet's encoder is CPU work).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gc_lib.corpus._count_store import range_reader, row_reader
from gc_lib.corpus._passes import PIECE_CELLS
from gc_lib.corpus._passes import _pieces as pieces  # the tokenising task's pieces of a chunk
from gc_lib.corpus.shards import ROW_GROUP_CELLS, SHARD_FORMATS, parquet_statistics
from gc_lib.corpus.tokenizer import SHARD_SCHEMA, rank_rows


class FloorWriter:
    """The format's plain streaming writer: Parquet as our shards are (the floor of that format is its writer), Arrow
    IPC with no options."""

    def __init__(self, dest: Path, fmt: str):
        self.sink = None if fmt == "parquet" else pa.OSFile(str(dest), "wb")
        self.writer = pq.ParquetWriter(dest, SHARD_SCHEMA, compression="none", use_dictionary=["dataset"],
                                       write_statistics=parquet_statistics(SHARD_SCHEMA)) \
            if fmt == "parquet" else pa.ipc.new_file(self.sink, SHARD_SCHEMA)

    def append(self, table: pa.Table) -> None:
        if self.sink is None:
            self.writer.write_table(table, row_group_size=ROW_GROUP_CELLS)
        else:
            self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()
        if self.sink is not None:
            self.sink.close()


def floor_reader(store: h5py.File, fd: int, buffers: dict | None = None):
    """``floor_read(start, stop)``: rows ``[start, stop)``'s three CSR slices and nothing else, ``data`` and
    ``indices`` read as our reader reads them (``_count_store.range_reader``; into ``buffers`` where given); returns
    the values read."""
    x = store["X"]
    data, indices = (range_reader(x[name], fd, name, x[name].dtype) for name in ("data", "indices"))

    def floor_read(start: int, stop: int) -> int:
        indptr = x["indptr"][start:stop + 1]
        lo, hi = int(indptr[0]), int(indptr[-1])
        return data(lo, hi, buffers).size + indices(lo, hi, buffers).size

    return floor_read


def ranked_tables(path: Path, tokenizer, col_token: np.ndarray, col_median: np.ndarray,
                  chunk: int) -> list[list[pa.Table]]:
    """Per chunk of ``chunk`` cells, its pieces' shard tables (our ranking; untimed)."""
    with h5py.File(path, "r") as f:
        n_cells = int(f["X"].attrs["shape"][0])
    with row_reader(path) as read:
        return [[rank_rows(read(a, b), col_token, col_median, n_top=tokenizer.n_top,
                           library_size=tokenizer.library_size, n_tokens=len(tokenizer.vocab))
                 .to_table("human", "synthetic") for a, b in pieces(start, min(start + chunk, n_cells))]
                for start in range(0, n_cells, chunk)]


def io_floor(path: Path, tables: list[list[pa.Table]], fmt: str, out_dir: Path, threads: int = 1,
             chunk: int = 10_000) -> dict:
    """Wall seconds to read every row and write ``tables`` (:func:`ranked_tables`) in ``fmt``, chunk by chunk on
    ``threads`` threads; also the reads' and the writes' seconds summed over the threads."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def one_chunk(index: int) -> tuple[float, float]:
        start, read_s, write_s = index * chunk, 0.0, 0.0
        with h5py.File(path, "r") as f, open(path, "rb") as raw:
            x = f["X"]
            stop = min(start + chunk, int(x.attrs["shape"][0]))
            room = int(np.diff(x["indptr"][start:stop + 1]).max()) * PIECE_CELLS
            floor_read = floor_reader(f, raw.fileno(), {"data": np.empty(room, x["data"].dtype),
                                                       "indices": np.empty(room, x["indices"].dtype)})
            began = time.perf_counter()
            writer = FloorWriter(out_dir / f"floor-{start}{SHARD_FORMATS[fmt]}", fmt)
            write_s += time.perf_counter() - began
            for (a, b), table in zip(pieces(start, stop), tables[index]):
                began = time.perf_counter()
                floor_read(a, b)
                read_s += time.perf_counter() - began
                began = time.perf_counter()
                writer.append(table)
                write_s += time.perf_counter() - began
            began = time.perf_counter()
            writer.close()
            return read_s, write_s + time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(one_chunk, range(len(tables))))
    wall = time.perf_counter() - began
    return {"work_s": wall, "read_s": sum(p[0] for p in parts), "write_s": sum(p[1] for p in parts), "setup_s": 0.0}
