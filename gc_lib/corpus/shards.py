"""The shard files of a tokenised corpus: written atomically in Parquet or Arrow IPC, read back group by group.

A shard holds :data:`gc_lib.corpus.tokenizer.SHARD_SCHEMA` in groups of :data:`ROW_GROUP_CELLS` cells (Parquet row
groups, Arrow IPC record batches): the unit the pretraining loader shuffles. Its format follows its suffix:

- ``.parquet`` (the default): read by pandas, Spark, DuckDB, Polars, HF ``datasets``; optional compression;
- ``.arrow`` (Arrow IPC file, "Feather v2"): the same columns with no encoding step, read zero-copy (memory-mapped)
  by pyarrow, Polars, DuckDB and HF ``datasets``. Why offer it: writing Parquet's list columns costs 5–7× an IPC
  file of the same table, the largest cost of tokenising after the ranking (benchmarks/RESULTS.md, issue 18).

Each shard's manifest entry carries an xxh3-128 digest of the file, taken as its bytes are written (the same as
:func:`shard_digest` of the finished file): a content checksum for integrity and cache identity
(``gc_lib.model.pretrain.corpus_hash``), not a security hash; it runs at memory speed, where sha256 cost about a tenth
of the whole tokenising task. Manifests written before carry ``sha256`` instead; :func:`manifest_digest` reads either.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from ..core.atomic import atomic_path
from ..inputs.fetch import file_digest

#: shard formats by name, and the suffix that marks each
SHARD_FORMATS = {"parquet": ".parquet", "arrow": ".arrow"}
#: codec of the shards by default: none is fastest, since the values are near-incompressible floats
#: ("zstd" saves ~25 % of disk for ~35 % less throughput; measured in benchmarks/RESULTS.md)
DEFAULT_COMPRESSION = "none"
#: cells per group: small groups let the loader's batches mix datasets; 256 cells keep the per-group cost negligible
ROW_GROUP_CELLS = 256
_ARROW_CODECS = {"none": None, "lz4": "lz4", "zstd": "zstd"}


def shard_format(path: str | os.PathLike) -> str:
    """The format of a shard file, from its suffix (a clear error for any other file)."""
    suffix = Path(path).suffix
    for name, known in SHARD_FORMATS.items():
        if suffix == known:
            return name
    raise ValueError(f"{path}: not a shard file (expected a suffix among {sorted(SHARD_FORMATS.values())})")


def check_format(name: str, compression: str = DEFAULT_COMPRESSION) -> str:
    """``name`` if it is a shard format that can use ``compression``; else a ``ValueError`` naming the choices."""
    if name not in SHARD_FORMATS:
        raise ValueError(f"unknown shard format {name!r}; choose one of {sorted(SHARD_FORMATS)}")
    if name == "arrow" and compression not in _ARROW_CODECS:
        raise ValueError(f"Arrow IPC shards take compression {sorted(_ARROW_CODECS)}, not {compression!r}")
    return name


class _DigestingFile:
    """A write-only binary file that feeds each byte it writes to an xxh3-128 digest, so a shard's digest is ready
    when its writer closes instead of costing a second pass over the file. pyarrow's Parquet and IPC file writers
    only append (no seek), so the digest is :func:`shard_digest` of the finished file (tested)."""

    def __init__(self, path: str | os.PathLike):
        self._file, self._digest, self._position = open(path, "wb"), xxhash.xxh3_128(), 0

    def write(self, data) -> int:
        self._digest.update(data)
        written = self._file.write(data)
        self._position += written
        return written

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@dataclass
class ShardOutput:
    """What :func:`shard_writer` yields: ``write(table)`` appends cells; ``digest`` (hex xxh3-128 of the file) is
    set once the block has ended and the shard is in place."""
    write: Callable[[pa.Table], None]
    digest: str | None = None


@contextmanager
def shard_writer(dest: str | os.PathLike, schema: pa.Schema, *,
                 compression: str = DEFAULT_COMPRESSION) -> Iterator[ShardOutput]:
    """Yield a :class:`ShardOutput` that appends tables to one shard, in the format its suffix names, in groups of
    :data:`ROW_GROUP_CELLS` cells (feed it multiples of that, so every group but the last is full); the shard appears
    under ``dest`` only when the block ends without error (a crash never leaves a partial shard).

    Streaming lets a task write a shard piece by piece from small reused buffers instead of one large table; the
    bytes are digested as they are written.
    """
    name = check_format(shard_format(dest), compression)
    with atomic_path(dest) as tmp:
        stream = _DigestingFile(tmp)
        try:
            with pa.PythonFile(stream, mode="w") as sink, _format_writer(sink, name, schema, compression) as output:
                yield output
        finally:
            stream.close()
        output.digest = stream.hexdigest()


@contextmanager
def _format_writer(sink: pa.NativeFile, name: str, schema: pa.Schema, compression: str) -> Iterator[ShardOutput]:
    """The format's streaming writer on ``sink``, appending in groups of :data:`ROW_GROUP_CELLS`; closed (footer
    written) when the block ends."""
    if name == "parquet":
        with pq.ParquetWriter(sink, schema, compression=compression, use_dictionary=["dataset"],
                              write_statistics=parquet_statistics(schema)) as writer:
            yield ShardOutput(lambda table: writer.write_table(table, row_group_size=ROW_GROUP_CELLS))
    else:
        options = pa.ipc.IpcWriteOptions(compression=_ARROW_CODECS[compression])
        with pa.ipc.new_file(sink, schema, options=options) as writer:
            yield ShardOutput(lambda table: writer.write_table(table, max_chunksize=ROW_GROUP_CELLS))


def parquet_statistics(schema: pa.Schema) -> list[str]:
    """The columns whose Parquet statistics (min/max per row group) a shard keeps: the scalar ones, which readers
    filter on (``row``, ``length``, ``dataset``). The list columns' statistics serve no reader (min/max over a group's
    half a million token ids or values) and cost ~6 % of the write (benchmarks/RESULTS.md, issue 18, ninth pass)."""
    return [f.name for f in schema if not pa.types.is_list(f.type)]


def write_shard(table: pa.Table, dest: str | os.PathLike, *, compression: str = DEFAULT_COMPRESSION) -> Path:
    """Write one shard in the format its suffix names, atomically (a crash never leaves a partial shard)."""
    with shard_writer(dest, table.schema, compression=compression) as shard:
        shard.write(table)
    return Path(dest)


class Shard:
    """One shard file opened for reading, whatever its format: its groups, batches, or whole columns."""

    def __init__(self, path: str | os.PathLike):
        self.path, self.format = Path(path), shard_format(path)
        if self.format == "parquet":
            self._file = pq.ParquetFile(self.path)
            self.num_groups = self._file.num_row_groups
        else:
            self._file = pa.ipc.open_file(pa.memory_map(str(self.path)))
            self.num_groups = self._file.num_record_batches

    def read_group(self, group: int, columns: Sequence[str] | None = None) -> pa.Table:
        """The cells of one group (a Parquet row group or an IPC record batch)."""
        if self.format == "parquet":
            return self._file.read_row_group(group, columns=_listed(columns))
        return _select(pa.Table.from_batches([self._file.get_batch(group)]), columns)

    def iter_batches(self, batch_size: int, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The cells in order, ``batch_size`` at a time (the last batch may be shorter)."""
        if self.format == "parquet":
            yield from self._file.iter_batches(batch_size=batch_size, columns=_listed(columns))
        else:
            yield from self.read(columns).to_batches(max_chunksize=batch_size)

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every cell of the shard."""
        if self.format == "parquet":
            return self._file.read(columns=_listed(columns))
        return _select(self._file.read_all(), columns)


def read_shard(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """The cells of one shard file of either format."""
    return Shard(path).read(columns)


def shard_digest(path: str | os.PathLike) -> str:
    """Hex xxh3-128 of a shard file."""
    return file_digest(path, xxhash.xxh3_128(), chunk=1 << 24)


def manifest_digest(entry: dict) -> str:
    """A shard's recorded content digest from its manifest entry: ``xxh3_128:<hex>``, or the bare sha256 hex of
    manifests written before xxh3 (unchanged, so the identity of existing corpora and runs stays the same)."""
    if "sha256" in entry:
        return entry["sha256"]
    return f"xxh3_128:{entry['xxh3_128']}"


def _listed(columns: Sequence[str] | None) -> list[str] | None:
    return list(columns) if columns is not None else None


def _select(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    return table if columns is None else table.select(list(columns))
