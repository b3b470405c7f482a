"""Compiled (numba) kernels of the corpus builder and tokenizer, each over one CSR chunk of cells.

Why compiled: a cell holds 2–4k expressed genes and must become its top-N genes sorted by normalised
value; a per-cell ``numpy.argsort`` costs ~140 µs, the whole ranking kernel below ~35 µs (two radix passes
over the leading bits of each key, then an exact finish; benchmarks/RESULTS.md), and the Python loop around
either would dominate. Every kernel takes the three CSR arrays (``data``, ``indices``, ``indptr``)
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
    """Factor that scales row ``r`` to ``library_size`` total counts (1 when ``library_size`` is 0: off).

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
    return library_size / ((a0 + a1) + (a2 + a3))


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


@nb.njit(cache=True, nogil=True)
def add_to_histogram(hist, data, indices, indptr, keep, col_slot, library_size,
                     integer_mode, n_exact, log_lo, bins_per_octave, table, first_exp):
    """Add the non-zero values of the kept cells to ``hist[slot, bin]`` (``col_slot[j] < 0``: column ignored).

    With ``library_size > 0`` a value is ``count * library_size / total_counts`` of its cell. ``table`` and
    ``first_exp``: the grid's :func:`bin_table` and its first octave.
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
                v = np.float64(c * scale)
                if integer_mode and v < n_exact:  # a count's own bin: cheaper than the table
                    b = np.int64(v)
                else:
                    b = _table_bin(v, table, first_exp)
                    if b < 0:
                        b = median_bin(v, integer_mode, n_exact, log_lo, bins_per_octave, n_bins)
                hist[s, b] += 1


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


#: the ranking sort orders keys by the top SORTED_BITS bits of their ratio span, in two radix passes of 10 bits
#: (1,024 buckets); keys sharing those bits (few, but every exact tie) are then ordered whole by :func:`order_runs`.
#: Two passes over 20 bits measured ~6 µs per cell faster than three over the full ~27-bit span
#: (benchmarks/tokenize_profile.py, 2,000–4,000 genes per cell)
SORTED_BITS = 20
DIGIT_BITS = 10
#: runs up to this length are ordered by insertion sort, longer ones by radix_sort_u64
SHORT_RUN = 24


@nb.njit(cache=True, nogil=True)
def _bucket_shift(lo, hi):
    """Bits dropped from ``ratio part - lo`` so that what is left of the span ``hi - lo`` fits SORTED_BITS."""
    span, n_bits = hi - lo, 0
    while span > np.uint64(0):
        n_bits += 1
        span >>= np.uint64(1)
    return max(0, n_bits - SORTED_BITS)


@nb.njit(cache=True, nogil=True)
def radix_sort_prefix(keys, tmp, hist, n, low_bits, lo, shift):
    """Sort ``keys[:n]`` stably by their bucket ``((key >> low_bits) - lo) >> shift`` (``shift`` from
    :func:`_bucket_shift` of the span of the ratio parts ``key >> low_bits``, all ≥ ``lo``). ``hist`` needs
    ``(2, 2**DIGIT_BITS)`` int64 entries.

    LSD radix: both digit histograms counted in one pass, then one scatter per digit that varies.
    """
    shift = np.uint64(shift)
    low, mask = np.uint64(low_bits), np.uint64((1 << DIGIT_BITS) - 1)
    hist[:, :] = 0
    for i in range(n):
        v = ((keys[i] >> low) - lo) >> shift
        hist[0, v & mask] += 1
        hist[1, v >> np.uint64(DIGIT_BITS)] += 1
    src, dst = keys, tmp
    for d in range(2):
        running, varies = 0, True
        for b in range(1 << DIGIT_BITS):
            c = hist[d, b]
            varies = varies and c != n
            hist[d, b] = running
            running += c
        if not varies:  # one bucket holds every key: the digit is constant, the pass would change nothing
            continue
        digit_shift = shift + np.uint64(DIGIT_BITS * d)
        for i in range(n):
            k = src[i]
            b = (((k >> low) - lo) >> digit_shift) & mask
            dst[hist[d, b]] = k
            hist[d, b] += 1
        src, dst = dst, src
    if src is not keys:
        keys[:n] = src[:n]


@nb.njit(cache=True, nogil=True)
def _sort_run(keys, tmp, i, j):
    """Sort ``keys[i:j]`` ascending (already-sorted runs, the usual case, cost one scan)."""
    for q in range(i + 1, j):
        if keys[q] < keys[q - 1]:
            break
    else:
        return
    if j - i <= SHORT_RUN:
        for a in range(i + 1, j):
            v, q = keys[a], a - 1
            while q >= i and keys[q] > v:
                keys[q + 1] = keys[q]
                q -= 1
            keys[q + 1] = v
    else:
        radix_sort_u64(keys[i:j], tmp, j - i, 64)


@nb.njit(cache=True, nogil=True)
def order_runs(keys, tmp, n, m, low_bits, lo, shift):
    """After :func:`radix_sort_prefix`, sort each run of keys sharing a bucket by the whole key (ratio, then token);
    only runs starting among the first ``m`` keys matter, and a run crossing position ``m`` is sorted whole, so the
    cut keeps exactly the right keys."""
    shift, low = np.uint64(shift), np.uint64(low_bits)
    i = 0
    while i < m:
        bucket, j = ((keys[i] >> low) - lo) >> shift, i + 1
        while j < n and (((keys[j] >> low) - lo) >> shift) == bucket:
            j += 1
        if j - i > 1:
            _sort_run(keys, tmp, i, j)
        i = j


@nb.njit(cache=True, nogil=True)
def tokenize_csr(data, indices, indptr, keep, col_token, col_median, n_top, library_size, token_bits,
                 out_ids, out_values, out_lengths):
    """Rank each kept cell's genes and write its top ``n_top`` tokens and values; return the tokens written.

    Outputs are flat: kept cell ``i`` owns ``out_ids[offset_i : offset_i + out_lengths[i]]``; ``out_ids`` and
    ``out_values`` need room for ``sum(min(nnz_i, n_top))``; ``token_bits`` must hold the largest token id.
    Genes are ranked by ``ratio = float32(count * scale / median)`` (the value is ``log2(1 + ratio)``, so the
    order is the same) through the key ``(2**31 - 1 - bits(ratio)) << token_bits | token``, sorted ascending —
    ratio descending, then token ascending — by a radix sort of its leading bits (:func:`radix_sort_prefix`) and an
    exact finish (:func:`order_runs`). The logarithm is taken only for the genes kept, once per distinct ratio.
    """
    max_nnz = 0
    for r in range(indptr.size - 1):
        max_nnz = max(max_nnz, indptr[r + 1] - indptr[r])
    keys = np.empty(max_nnz, np.uint64)
    tmp = np.empty(max_nnz, np.uint64)
    hist = np.empty((2, 1 << DIGIT_BITS), np.int64)
    low = np.uint64(token_bits)
    token_mask = (np.uint64(1) << low) - np.uint64(1)
    pos = 0
    cell = 0
    for r in range(indptr.size - 1):
        if not keep[r]:
            continue
        scale = _cell_scale(data, indptr, r, library_size)
        k, lo, hi = 0, _U32_MAX, np.uint64(0)
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            t = col_token[j]
            c = data[p]
            if t >= 0 and c > 0:
                ratio = np.float32(c * scale / col_median[j])
                inverse = _U32_MAX - np.uint64(ratio.view(np.uint32))
                keys[k] = (inverse << low) | np.uint64(t)
                lo, hi = min(lo, inverse), max(hi, inverse)
                k += 1
        shift = _bucket_shift(lo, hi)
        radix_sort_prefix(keys, tmp, hist, k, token_bits, lo, shift)
        m = min(k, n_top)
        order_runs(keys, tmp, k, m, token_bits, lo, shift)
        last, value = _U32_MAX + np.uint64(1), np.float32(0)
        for i in range(m):
            out_ids[pos + i] = np.int32(keys[i] & token_mask)
            inverse = keys[i] >> low
            if inverse != last:
                ratio = np.uint32(_U32_MAX - inverse).view(np.float32)
                value = np.float32(np.log2(1.0 + np.float64(ratio)))
                last = inverse
            out_values[pos + i] = value
        out_lengths[cell] = m
        pos += m
        cell += 1
    return pos
