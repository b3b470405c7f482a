"""Compiled (numba) kernels of the corpus builder and tokenizer, each over one CSR chunk of cells.

Why compiled: a cell holds 2–4k expressed genes and must become its top-N genes sorted by normalised
value; a per-cell ``numpy.argsort`` costs ~140 µs, the LSD radix sort below ~45 µs, and the Python loop
around either would dominate. Every kernel takes the three CSR arrays (``data``, ``indices``, ``indptr``)
plus per-column lookup tables prepared once per input file, so no Python runs per cell.

Conventions shared by the kernels:

- ``col_token[j]``: the vocabulary token of input column ``j``, or -1 if the gene is not in the vocabulary;
- ``col_median[j]``: that gene's corpus non-zero median (float64; unused where ``col_token[j] < 0``);
- a count ``c`` gives ``ratio = float32(c * scale / median)`` (computed in float64, then rounded), where
  ``scale = library_size / total_counts`` with library-size scaling and ``1`` without; its normalised
  value is ``float32(log2(1 + ratio))``;
- ranking: ratio (hence value) descending, ties by token id ascending, so a cell's tokens never depend on
  the column order of its file.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_U32_MAX = np.uint64(0x7FFFFFFF)  # positive float32 bit patterns are below 2**31 and ordered like the floats


@nb.njit(cache=True, nogil=True)
def _cell_scale(data, indptr, r, library_size):
    """Factor that scales row ``r`` to ``library_size`` total counts (1 when ``library_size`` is 0: off)."""
    if library_size <= 0:
        return 1.0
    total = 0.0
    for p in range(indptr[r], indptr[r + 1]):
        total += data[p]
    return library_size / total


# ---------------------------------------------------------------------------------------------------
# Validation and per-cell metrics (QC pass)
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
    """Per cell: total counts, mitochondrial counts, and the number of expressed ``is_counted`` genes.

    ``is_mito`` / ``is_counted`` are boolean per input column (mitochondrially encoded genes;
    protein-coding or miRNA genes for the "> 6 expressed genes" rule).
    """
    n = indptr.size - 1
    total = np.zeros(n, np.float64)
    mito = np.zeros(n, np.float64)
    n_counted = np.zeros(n, np.int32)
    for r in range(n):
        for p in range(indptr[r], indptr[r + 1]):
            c = data[p]
            if c <= 0:
                continue
            j = indices[p]
            total[r] += c
            if is_mito[j]:
                mito[r] += c
            if is_counted[j]:
                n_counted[r] += 1
    return total, mito, n_counted


# ---------------------------------------------------------------------------------------------------
# Non-zero median histograms (medians pass)
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


@nb.njit(cache=True, nogil=True)
def add_to_histogram(hist, data, indices, indptr, keep, col_slot, library_size,
                     integer_mode, n_exact, log_lo, bins_per_octave):
    """Add the non-zero values of the kept cells to ``hist[slot, bin]`` (``col_slot[j] < 0``: column ignored).

    With ``library_size > 0`` a value is ``count * library_size / total_counts`` of its cell.
    """
    n_bins = hist.shape[1]
    for r in range(indptr.size - 1):
        if not keep[r]:
            continue
        scale = _cell_scale(data, indptr, r, library_size)
        for p in range(indptr[r], indptr[r + 1]):
            c = data[p]
            s = col_slot[indices[p]]
            if c > 0 and s >= 0:
                hist[s, median_bin(c * scale, integer_mode, n_exact, log_lo, bins_per_octave, n_bins)] += 1


# ---------------------------------------------------------------------------------------------------
# Tokenisation (ranking pass)
# ---------------------------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def radix_sort_u64(keys, tmp, n, n_bits):
    """Sort ``keys[:n]`` ascending in place: LSD radix over 8-bit digits, skipping digits that are constant."""
    n_digits = (n_bits + 7) // 8
    hist = np.zeros((n_digits, 256), np.int64)
    for i in range(n):
        k = keys[i]
        for d in range(n_digits):
            hist[d, (k >> np.uint64(8 * d)) & np.uint64(255)] += 1
    src, dst = keys, tmp
    swapped = False
    for d in range(n_digits):
        h = hist[d]
        constant = False
        for b in range(256):
            if h[b] != 0:
                constant = h[b] == n
                break
        if constant:
            continue
        running = 0
        for b in range(256):
            c = h[b]
            h[b] = running
            running += c
        shift = np.uint64(8 * d)
        for i in range(n):
            k = src[i]
            b = (k >> shift) & np.uint64(255)
            dst[h[b]] = k
            h[b] += 1
        src, dst = dst, src
        swapped = not swapped
    if swapped:
        for i in range(n):
            keys[i] = src[i]


@nb.njit(cache=True, nogil=True)
def tokenize_csr(data, indices, indptr, keep, col_token, col_median, n_top, library_size, token_bits,
                 out_ids, out_values, out_lengths):
    """Rank each kept cell's genes and write its top ``n_top`` tokens and values; return the tokens written.

    Outputs are flat: kept cell ``i`` owns ``out_ids[offset_i : offset_i + out_lengths[i]]``; ``out_ids`` and
    ``out_values`` need room for ``sum(min(nnz_i, n_top))``; ``token_bits`` must hold the largest token id.
    Genes are ranked by ``ratio = float32(count * scale / median)`` (the value is ``log2(1 + ratio)``, so the
    order is the same) with one unsigned sort of ``(2**31 - 1 - bits(ratio)) << token_bits | token``: ratio
    descending, then token ascending. The logarithm is taken only for the genes kept.
    """
    max_nnz = 0
    for r in range(indptr.size - 1):
        max_nnz = max(max_nnz, indptr[r + 1] - indptr[r])
    keys = np.empty(max_nnz, np.uint64)
    tmp = np.empty(max_nnz, np.uint64)
    token_mask = (np.uint64(1) << np.uint64(token_bits)) - np.uint64(1)
    pos = 0
    cell = 0
    for r in range(indptr.size - 1):
        if not keep[r]:
            continue
        scale = _cell_scale(data, indptr, r, library_size)
        k = 0
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            t = col_token[j]
            c = data[p]
            if t >= 0 and c > 0:
                ratio = np.float32(c * scale / col_median[j])
                bits = np.uint64(ratio.view(np.uint32))
                keys[k] = ((_U32_MAX - bits) << np.uint64(token_bits)) | np.uint64(t)
                k += 1
        radix_sort_u64(keys, tmp, k, 31 + token_bits)
        m = min(k, n_top)
        for i in range(m):
            out_ids[pos + i] = np.int32(keys[i] & token_mask)
            ratio = np.uint32(_U32_MAX - (keys[i] >> np.uint64(token_bits))).view(np.float32)
            out_values[pos + i] = np.float32(np.log2(1.0 + np.float64(ratio)))
        out_lengths[cell] = m
        pos += m
        cell += 1
    return pos
