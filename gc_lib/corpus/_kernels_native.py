"""The corpus builder's first-pass kernels compiled ahead of time (``_kernels_native.c``), with numba's signatures.

:func:`first_pass_kernels` is what the builder calls: this module where its library loads (see
:mod:`gc_lib.corpus._native`), else :mod:`gc_lib.corpus._kernels`. Each function here takes the numba kernel's
arguments and gives its results (tested against it); inputs the C code does not take — values other than float32 or
float64, column indices other than int32, a histogram other than a C-contiguous uint32 table — go to the numba kernel,
so every input gets a result either way. Unlike numba's, the C kernels check column indices (``IndexError``).
"""
from __future__ import annotations

import ctypes
import functools
import sys
from types import ModuleType

import numpy as np

from . import _native
from ._native import pointer

NAME = "_kernels_native"
NUMBA = "_kernels"  # the numba kernels these copy: their fallback, imported on first use


@functools.cache
def _library() -> ctypes.CDLL:
    library = _native.load(NAME)
    _native.declare(library.gc_first_invalid_value, "pii")
    _native.declare(library.gc_cell_metrics, "pippippippp")
    _native.declare(library.gc_bin_table, "iiddiiip", None)
    _native.declare(library.gc_add_to_histogram, "pipippippidiiddipii")
    _native.declare(library.gc_table_bits, "")
    return library



def _single(data: np.ndarray) -> int | None:
    """1 for float32 values, 0 for float64, ``None`` for any other dtype or layout (numba's then)."""
    if not data.flags.c_contiguous:
        return None
    return {np.dtype(np.float32): 1, np.dtype(np.float64): 0}.get(data.dtype)


def _int32(indices: np.ndarray) -> bool:
    """Whether the C kernels take these column indices (contiguous int32; others go to numba's)."""
    return indices.dtype == np.int32 and indices.flags.c_contiguous


def first_invalid_value(data: np.ndarray) -> int:
    """:func:`gc_lib.corpus._kernels.first_invalid_value`."""
    single = _single(data)
    if single is None:
        return _native.numba_kernels(NUMBA).first_invalid_value(data)
    return _library().gc_first_invalid_value(data.ctypes.data, single, data.size)


def cell_metrics(data, indices, indptr, is_mito, is_counted) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`gc_lib.corpus._kernels.cell_metrics` (``is_mito`` and ``is_counted`` give the number of columns)."""
    single = _single(data)
    if single is None or not _int32(indices):
        return _native.numba_kernels(NUMBA).cell_metrics(data, indices, indptr, is_mito, is_counted)
    n = indptr.size - 1
    total, mito, n_counted = np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.int32)
    n_cols = min(is_mito.size, is_counted.size)
    is_mito, is_counted = np.ascontiguousarray(is_mito, dtype=bool), np.ascontiguousarray(is_counted, dtype=bool)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    _native.check_columns(_library().gc_cell_metrics(
        data.ctypes.data, single, indices.ctypes.data, indptr.ctypes.data, n, is_mito.ctypes.data,
        is_counted.ctypes.data, n_cols, total.ctypes.data, mito.ctypes.data, n_counted.ctypes.data), n_cols)
    return total, mito, n_counted


def bin_table(integer_mode, n_exact, log_lo, bins_per_octave, n_bins, first_exp, n_octaves) -> np.ndarray:
    """:func:`gc_lib.corpus._kernels.bin_table`."""
    table = np.empty(n_octaves << _library().gc_table_bits(), np.int16)
    _library().gc_bin_table(int(integer_mode), n_exact, log_lo, bins_per_octave, n_bins, first_exp, n_octaves,
                            table.ctypes.data)
    return table


def add_to_histogram(hist, data, indices, indptr, keep, col_slot, library_size, integer_mode, n_exact, log_lo,
                     bins_per_octave, table, first_exp) -> None:
    """:func:`gc_lib.corpus._kernels.add_to_histogram` (``col_slot`` gives the number of columns)."""
    single = _single(data)
    if single is None or not _int32(indices) or hist.dtype != np.uint32 or not hist.flags.c_contiguous \
            or hist.ndim != 2:
        return _native.numba_kernels(NUMBA).add_to_histogram(hist, data, indices, indptr, keep, col_slot, library_size,
                                                             integer_mode, n_exact, log_lo, bins_per_octave, table,
                                                             first_exp)
    col_slot = np.ascontiguousarray(col_slot, dtype=np.int64)
    indptr, keep = np.ascontiguousarray(indptr, dtype=np.int64), np.ascontiguousarray(keep, dtype=bool)
    _native.check_columns(_library().gc_add_to_histogram(
        hist.ctypes.data, hist.shape[1], data.ctypes.data, single, indices.ctypes.data, indptr.ctypes.data,
        indptr.size - 1, keep.ctypes.data, col_slot.ctypes.data, col_slot.size, library_size, int(integer_mode),
        n_exact, log_lo, bins_per_octave, hist.shape[0], pointer(table, np.int16), table.size, first_exp),
        col_slot.size)


def first_pass_kernels() -> ModuleType:
    """The module whose kernels the builder's first pass calls: this one where its library loads, else numba's."""
    return sys.modules[__name__] if _native.use_c(NAME) else _native.numba_kernels(NUMBA)


def kernel_name(kernels: ModuleType) -> str:
    """``"c"`` or ``"numba"``: which module :func:`first_pass_kernels` returned (benchmarks report it)."""
    return "c" if kernels is sys.modules[__name__] else "numba"
