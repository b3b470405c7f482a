"""Compiled (numba) kernels of the corpus builder's QC-and-medians pass, each over one CSR chunk of cells.

Every kernel takes the three CSR arrays (``data``, ``indices``, ``indptr``) plus per-column lookup tables prepared
once per input file, so no Python runs per cell. The tokenizer's ranking kernel is in
:mod:`gc_lib.corpus._rank_kernels`, which shares :func:`_cell_scale` (the scaling to a library size).

The same kernels in C (``_kernels_native.c``, :mod:`gc_lib.corpus._kernels_native`) run wherever they were built at
install, sparing each process numba's start-up; these are their fallback and their reference. A change here is made
there too: tests/unit/test_kernels_native.py compares the two.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _cell_scale(data, indptr, r, library_size):
    """Factor that scales row ``r`` to ``library_size`` total counts (1 when ``library_size`` is 0: off, and for a
    row without counts, whose scale nothing uses).

    Four running sums, so the additions do not wait on each other (2× faster than one); for counts, which are
    integers, any order of addition gives the exact total.
    """
    if library_size <= 0:
        return 1.0
    a0 = a1 = a2 = a3 = 0.0
    p, end = indptr[r], indptr[r + 1]
    while p + 4 <= end:
        a0 += data[p]
        a1 += data[p + 1]
        a2 += data[p + 2]
        a3 += data[p + 3]
        p += 4
    while p < end:
        a0 += data[p]
        p += 1
    total = (a0 + a1) + (a2 + a3)
    return library_size / total if total > 0 else 1.0


# ---------------------------------------------------------------------------------------------------
# Validation and per-cell metrics (QC)
# ---------------------------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def first_invalid_value(data):
    """Index of the first NaN, infinite, negative or non-integer count in ``data``, or -1 if all are valid."""
    for i in range(data.size):
        v = data[i]
        if not np.isfinite(v) or v < 0 or v != np.floor(v):
            return i
    return -1


@nb.njit(cache=True, nogil=True)
def cell_metrics(data, indices, indptr, is_mito, is_counted):
    """Per cell: total counts, mitochondrial counts, and the number of expressed ``is_counted`` genes (values ≤ 0
    are not expressed).

    ``is_mito`` / ``is_counted`` are boolean per input column (mitochondrially encoded genes;
    protein-coding or miRNA genes for the "> 6 expressed genes" rule). Two values per step into two running totals
    and the mitochondrial branch taken only where a pair holds one (rare): 2× faster than one value at a time. The
    totals of integer counts (checked first by :func:`first_invalid_value`) are exact in any order of addition.
    """
    n = indptr.size - 1
    total = np.zeros(n, np.float64)
    mito = np.zeros(n, np.float64)
    n_counted = np.zeros(n, np.int32)
    for r in range(n):
        t0, t1, m, k = 0.0, 0.0, 0.0, 0
        p, end = indptr[r], indptr[r + 1]
        while p + 2 <= end:
            c0, c1, j0, j1 = data[p], data[p + 1], indices[p], indices[p + 1]
            ok0, ok1 = c0 > 0, c1 > 0
            t0 += c0 if ok0 else 0.0
            t1 += c1 if ok1 else 0.0
            if is_mito[j0] or is_mito[j1]:
                m += (c0 if ok0 and is_mito[j0] else 0.0) + (c1 if ok1 and is_mito[j1] else 0.0)
            k += (ok0 and is_counted[j0]) + (ok1 and is_counted[j1])
            p += 2
        if p < end:
            c0, j0 = data[p], indices[p]
            ok0 = c0 > 0
            t0 += c0 if ok0 else 0.0
            m += c0 if ok0 and is_mito[j0] else 0.0
            k += ok0 and is_counted[j0]
        total[r], mito[r], n_counted[r] = t0 + t1, m, k
    return total, mito, n_counted


# ---------------------------------------------------------------------------------------------------
# Non-zero median histograms (medians)
# ---------------------------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def median_bin(v, integer_mode, n_exact, log_lo, bins_per_octave, n_bins):
    """Histogram bin of a positive value; the grid is described in :mod:`gc_lib.corpus.medians`."""
    if integer_mode and v < n_exact:
        return np.int64(v)
    b = np.int64(np.floor((np.log2(v) - log_lo) * bins_per_octave))
    first = n_exact if integer_mode else 0
    b += first
    if b < first:
        b = first
    if b >= n_bins:
        b = n_bins - 1
    return b


#: mantissa bits that index :func:`bin_table`: each octave cut into 1,024 slices
TABLE_BITS = 10
_MANTISSA_BITS = 52


@nb.njit(cache=True, nogil=True)
def bin_table(integer_mode, n_exact, log_lo, bins_per_octave, n_bins, first_exp, n_octaves):
    """For each slice ``[2^e (1 + t/1024), 2^e (1 + (t+1)/1024))`` of the octaves ``e = first_exp …``, the bin that
    :func:`median_bin` gives every value in it, or -1 where the slice straddles a bin edge.

    Why: the scaled median pass took a ``log2`` per non-zero value (50 µs per cell against 16 on raw counts); a
    float's exponent and leading mantissa bits find its bin in this table instead, and only values in a straddling
    slice (about 1 in 80) or outside the table's octaves take the logarithm. The same bins: ``median_bin`` is
    non-decreasing in the value, so a slice whose first and last floats share a bin holds only that bin (tested).
    """
    table = np.empty(n_octaves << TABLE_BITS, np.int16)
    step = np.uint64(1) << np.uint64(_MANTISSA_BITS - TABLE_BITS)
    for i in range(table.size):
        exponent = np.uint64(first_exp + (i >> TABLE_BITS) + 1023)
        first = (exponent << np.uint64(_MANTISSA_BITS)) | (np.uint64(i & ((1 << TABLE_BITS) - 1)) * step)
        a = median_bin(np.uint64(first).view(np.float64), integer_mode, n_exact, log_lo, bins_per_octave, n_bins)
        b = median_bin(np.uint64(first + step - np.uint64(1)).view(np.float64), integer_mode, n_exact, log_lo,
                       bins_per_octave, n_bins)
        table[i] = a if a == b else -1
    return table


@nb.njit(cache=True, nogil=True)
def _table_bin(v, table, first_exp):
    """The bin of positive ``v`` from :func:`bin_table`, or -1 (a straddling slice, or outside the table)."""
    bits = np.float64(v).view(np.uint64)
    octave = np.int64(bits >> np.uint64(_MANTISSA_BITS)) - 1023 - first_exp
    if octave < 0 or (octave << TABLE_BITS) >= table.size:
        return np.int64(-1)
    mantissa = np.int64((bits >> np.uint64(_MANTISSA_BITS - TABLE_BITS)) & np.uint64((1 << TABLE_BITS) - 1))
    return np.int64(table[(octave << TABLE_BITS) | mantissa])


#: integer counts below this have their bin remembered per cell (:func:`add_to_histogram`)
_CACHED_COUNTS = 64


@nb.njit(cache=True, nogil=True)
def add_to_histogram(hist, data, indices, indptr, keep, col_slot, library_size,
                     integer_mode, n_exact, log_lo, bins_per_octave, table, first_exp):
    """Add the non-zero values of the kept cells to ``hist[bin, slot]`` (``col_slot[j] < 0``: column ignored).

    With ``library_size > 0`` a value is ``count * library_size / total_counts`` of its cell. ``table`` and
    ``first_exp``: the grid's :func:`bin_table` and its first octave. Bins are rows: a cell's genes (ascending
    columns) mostly share a few bins, so its increments walk along a few rows instead of jumping between genes' rows
    across the whole table (measured 2× faster at 20,000 genes, where the table outgrows the cache). Within a cell,
    equal counts share a bin, so with library-size scaling the bins of small integer counts (most of a cell's)
    are found once per cell (12 % faster on the benchmark input).
    """
    n_bins = hist.shape[0]
    known = np.empty(_CACHED_COUNTS, np.int64)  # this cell's bin of each small integer count, -1: not yet found
    for r in range(indptr.size - 1):
        if not keep[r]:
            continue
        scale = _cell_scale(data, indptr, r, library_size)
        known[:] = -1
        for p in range(indptr[r], indptr[r + 1]):
            c = data[p]
            s = col_slot[indices[p]]
            if c > 0 and s >= 0:
                if integer_mode and c < n_exact:  # a count's own bin: cheaper than remembering it
                    hist[np.int64(c), s] += 1
                    continue
                small = c < _CACHED_COUNTS and np.int64(c) == c
                if small and known[np.int64(c)] >= 0:
                    b = known[np.int64(c)]
                else:
                    b = _value_bin(np.float64(c * scale), integer_mode, n_exact, log_lo, bins_per_octave, n_bins,
                                   table, first_exp)
                    if small:
                        known[np.int64(c)] = b
                hist[b, s] += 1


@nb.njit(cache=True, nogil=True)
def _value_bin(v, integer_mode, n_exact, log_lo, bins_per_octave, n_bins, table, first_exp):
    """The histogram bin of positive ``v`` (not a count with its own bin): from the table, else :func:`median_bin`."""
    b = _table_bin(v, table, first_exp)
    if b < 0:
        b = median_bin(v, integer_mode, n_exact, log_lo, bins_per_octave, n_bins)
    return b
