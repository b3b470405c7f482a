"""The ranking kernel compiled ahead of time (``_rank_native.c``, built at install by setup.py), called through ctypes.

Why: the numba kernel (:mod:`gc_lib.corpus._rank_kernels`) costs every fresh process 0.2–0.3 s at its first call
(numba's CPU target initialises, and Python's next full garbage collection pays for what that allocated;
benchmarks/RESULTS.md); this library costs a ``dlopen``. It is the same algorithm with the same floating-point
operations, so it gives the numba kernel's bits (tested against it). Where it is not built, or is stale, or
``GC_LIB_KERNELS=numba``, the tokenizer uses the numba kernel (:func:`ranking_kernel`; loading and choosing:
:mod:`gc_lib.corpus._native`). ctypes releases the GIL for the call, so threads rank in parallel as they do with
numba's ``nogil`` kernel.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from . import _native
from ._log2_table import INV_LN2, LOG_GUARD, LOG_OF_POINT, LOG_POINTS, LOG_RECIPROCAL, LOG_TABLE_BITS
from ._native import pointer

NAME = "_rank_native"
_NO_MEMORY, _NO_ROOM = -1, -3  # the ranking kernel's other error codes (_native.BAD_COLUMN besides)
#: the kernels' log2 table (3 × 2**LOG_TABLE_BITS + 1: points, reciprocals, log2s), passed so both use the same bits
_LOG_TABLE = np.ascontiguousarray(np.stack([LOG_POINTS, LOG_RECIPROCAL, LOG_OF_POINT]), dtype=np.float64)



@functools.cache
def _library() -> ctypes.CDLL:
    """The loaded library with its functions declared, after checking its log2 table against the numba kernel's."""
    library = _native.load(NAME)
    bits = _native.declare(library.gc_log_table_bits, "")()
    if bits != LOG_TABLE_BITS:  # the table passed in would be read out of bounds
        raise RuntimeError(f"{NAME}.c ranks with a log2 table of {bits} bits, gc_lib.corpus._log2_table has "
                           f"{LOG_TABLE_BITS}: change both ({NAME}.c's LOG_TABLE_BITS)")
    _native.declare(library.gc_tokenize_csr, "pppipppiidippippdi")
    return library


def tokenize_csr(data, indices, indptr, keep, col_token, col_median, n_top, library_size, token_bits,
                 out_ids, out_values, out_lengths) -> int:
    """:func:`gc_lib.corpus._rank_kernels.tokenize_csr` in C (same arguments, same outputs); the caller checks
    that the library loads. Checked, where the numba kernel does not check: column indices (``IndexError`` outside
    ``col_token``) and the outputs' room (``ValueError``)."""
    n_rows = indptr.size - 1
    if keep.size != n_rows or out_lengths.size < int(np.count_nonzero(keep)):
        raise ValueError(f"keep has {keep.size} rows and out_lengths {out_lengths.size}; the chunk has {n_rows}")
    room = min(out_ids.size, out_values.size)
    used = _library().gc_tokenize_csr(
        pointer(data, np.float32), pointer(indices, np.int32), pointer(indptr, np.int64), n_rows,
        pointer(keep, np.bool_), pointer(col_token, np.int32), pointer(col_median, np.float64), col_token.size,
        n_top, library_size, token_bits, pointer(out_ids, np.int32), pointer(out_values, np.float32),
        room, pointer(out_lengths, np.int32), _LOG_TABLE.ctypes.data, INV_LN2, LOG_GUARD)
    if used == _NO_MEMORY:
        raise MemoryError("the ranking kernel could not allocate its buffers")
    _native.check_columns(used, col_token.size)
    if used == _NO_ROOM:
        raise ValueError(f"out_ids and out_values (room for {room}) cannot hold the chunk's tokens")
    return used


def ranking_kernel():
    """The ``tokenize_csr`` the tokenizer calls: this library's where it loads, else the numba kernel's
    (:func:`gc_lib.corpus._native.use_c`)."""
    return tokenize_csr if _native.use_c(NAME) else _native.numba_kernels("_rank_kernels").tokenize_csr


def kernel_name(kernel) -> str:
    """``"c"`` or ``"numba"``: which one :func:`ranking_kernel` returned (benchmarks report it)."""
    return "c" if kernel is tokenize_csr else "numba"
