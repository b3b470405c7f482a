"""Arrays reused from one piece of a tokenising task to the next, instead of fresh ones per piece.

Why: a piece's arrays (the CSR ``data`` and ``indices`` it reads, the ``ids`` and ``values`` it ranks into) are
megabytes each, and fresh memory is paid for page by page the first time it is touched; in a fresh process that
cost ~5 µs per cell of a 20,000-cell run (benchmarks/RESULTS.md, issue 18). A task takes one set per piece in flight
and gives it back once the piece is written, so at most ``threads + 2`` sets exist.
"""
from __future__ import annotations

import threading

import numpy as np


def reusable(buffers: dict | None, name: str, n: int, dtype) -> np.ndarray:
    """An array of ``n`` elements of ``dtype``: the start of ``buffers[name]`` when it is large enough, else a new
    array kept there for next time (``buffers=None``: always a new array)."""
    if buffers is None:
        return np.empty(n, dtype)
    array = buffers.get(name)
    if array is None or array.size < n or array.dtype != np.dtype(dtype):
        array = buffers[name] = np.empty(n, dtype)
    return array[:n]


class BufferSets:
    """A thread-safe stock of buffer sets (dicts for :func:`reusable`): ``take`` one (empty at first), ``give`` it
    back when nothing refers to its arrays any more."""

    def __init__(self):
        self._free: list[dict] = []
        self._lock = threading.Lock()

    def take(self) -> dict:
        with self._lock:
            return self._free.pop() if self._free else {}

    def give(self, buffers: dict) -> None:
        with self._lock:
            self._free.append(buffers)
