"""Element ranges of an unfiltered 1-D HDF5 dataset read straight from the file with ``os.preadv``, not through h5py.

Why: a tokenising task reads each piece's ``data`` and ``indices`` (nearly all of its input bytes). Through h5py that
is an HDF5 call made under the GIL (h5py serialises every HDF5 call), so a thread reading blocks the Python work of
the others; ``preadv`` copies the same bytes from the page cache into the numpy array with the GIL released, and
skips HDF5's selection machinery (benchmarks/RESULTS.md, issue 18).

Only datasets whose stored bytes are the array's bytes qualify: one dimension, a native-endian numeric type, no
filter (compression, shuffle, checksum), contiguous or chunked with every chunk allocated, in a file without a user
block; and the first elements read both ways must agree. Anything else (``direct_reader`` returns ``None``) is read
through h5py as before.
"""
from __future__ import annotations

import os
from typing import Callable

import h5py
import numpy as np

#: elements compared between h5py and the direct read before the direct read is trusted
CHECKED_ELEMENTS = 64


def direct_reader(dataset, fd: int) -> Callable[[int, int], np.ndarray] | None:
    """``read(lo, hi, out=None)`` → ``dataset[lo:hi]``, read from the open file descriptor ``fd`` of the dataset's
    file into a new array (or into the start of ``out``, a contiguous array of the dataset's type); ``None`` if the
    dataset does not qualify (see the module docstring)."""
    if not (hasattr(os, "preadv") and isinstance(dataset, h5py.Dataset) and _plain_layout(dataset)):
        return None
    extents = _extents(dataset)
    if extents is None:
        return None
    dtype, itemsize = dataset.dtype, dataset.dtype.itemsize

    def read(lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(max(hi - lo, 0), dtype) if out is None else out[:max(hi - lo, 0)]
        buffer = memoryview(out).cast("B")
        for offset, a, b in extents(lo, hi):
            _read_exactly(fd, buffer[(a - lo) * itemsize:(b - lo) * itemsize], offset)
        return out

    n = min(len(dataset), CHECKED_ELEMENTS)
    if not np.array_equal(read(0, n), dataset[:n]):
        return None
    return read


def _plain_layout(dataset: h5py.Dataset) -> bool:
    """One dimension, native-endian numbers, no filter, no user block before the HDF5 data."""
    dtype = dataset.dtype
    return (dataset.ndim == 1 and dtype.kind in "iuf" and dtype.isnative
            and dataset.id.get_create_plist().get_nfilters() == 0
            and dataset.file.id.get_create_plist().get_userblock() == 0)


def _extents(dataset: h5py.Dataset) -> Callable[[int, int], list[tuple[int, int, int]]] | None:
    """``extents(lo, hi)``: the ``(file offset, a, b)`` runs that hold elements ``[lo, hi)``; ``None`` where some
    storage is not allocated (its elements are the fill value, not bytes in the file)."""
    itemsize = dataset.dtype.itemsize
    if dataset.chunks is None:
        start = dataset.id.get_offset()
        if start is None:
            return None
        return lambda lo, hi: [(start + lo * itemsize, lo, hi)] if hi > lo else []
    chunk, n = dataset.chunks[0], len(dataset)
    if dataset.id.get_num_chunks() != -(-n // chunk):
        return None
    starts: dict[int, int] = {}  # chunk index → its file offset, looked up when first read

    def extents(lo: int, hi: int) -> list[tuple[int, int, int]]:
        runs = []
        for k in range(lo // chunk, (hi - 1) // chunk + 1 if hi > lo else lo // chunk):
            if k not in starts:
                starts[k] = dataset.id.get_chunk_info_by_coord((k * chunk,)).byte_offset
            a, b = max(lo, k * chunk), min(hi, (k + 1) * chunk)
            runs.append((starts[k] + (a - k * chunk) * itemsize, a, b))
        return runs

    return extents


def _read_exactly(fd: int, buffer: memoryview, offset: int) -> None:
    """Fill ``buffer`` from ``fd`` at ``offset`` (``preadv`` may return fewer bytes than asked)."""
    while len(buffer):
        got = os.preadv(fd, [buffer], offset)
        if got == 0:
            raise OSError(f"file ends before byte {offset + len(buffer)}: truncated HDF5 file")
        buffer, offset = buffer[got:], offset + got
