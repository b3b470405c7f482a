"""The tokenizer's ranking kernel, compiled with numba: each cell's top-N genes by normalised value.

Why compiled: a cell holds 2–4k expressed genes and must become its top-N genes sorted by normalised value; a
per-cell ``numpy.argsort`` costs ~140 µs, this kernel ~30 µs (two radix passes over the leading bits of each key,
an exact finish, a vectorised log2; benchmarks/RESULTS.md), and a Python loop around either would dominate.

The same kernel in C (``_rank_native.c``, :mod:`gc_lib.corpus._rank_native`) ranks wherever it was built at install,
sparing each process numba's start-up; this one is its fallback and its reference. A change here is made there too:
tests/unit/test_rank_native.py compares the two bit for bit. (numba's cache does not notice a change to
``_kernels._cell_scale``, which this module's kernel inlines: after changing it, clear ``__pycache__/*.nb[ic]``.)

Conventions (the tokenizer's contract, :mod:`gc_lib.corpus.tokenizer`):

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

from ._kernels import _cell_scale
from ._log2_table import INV_LN2, LOG_GUARD, LOG_OF_POINT, LOG_POINTS, LOG_RECIPROCAL, LOG_TABLE_BITS

_U32_MAX = np.uint64(0x7FFFFFFF)  # positive float32 bit patterns are below 2**31 and ordered like the floats


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
    h0, h1 = hist[0], hist[1]
    for i in range(n):
        v = ((keys[i] >> low) - lo) >> shift
        h0[v & mask] += 1
        h1[v >> np.uint64(DIGIT_BITS)] += 1
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
        h = hist[d]
        for i in range(n):
            k = src[i]
            b = (((k >> low) - lo) >> digit_shift) & mask
            at = h[b]
            dst[np.uint64(at)] = k
            h[b] = at + 1
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
def log2_many(x, out, n):
    """``out[:n] = float32(log2(x[:n]))`` for ``x >= 1``, exactly as libm's ``log2`` rounds to float32, in about half
    its time (the loop has no call and no branch, so it is vectorised). Returns how many values took libm's path.

    ``x = 2**e · m``: ``m`` is rounded to the nearest point ``c = 1 + i/128`` of a table of ``1/c`` and ``log2(c)``,
    and ``log2(m/c)`` (``|m/c - 1| <= 2**-8``) is a 7-term series, so the float64 result is within a few steps of the
    true log2 and its float32 rounding is libm's unless it lies within :data:`LOG_GUARD` steps of a float32 rounding
    boundary (about 1 value in 4 million) or ``x`` is out of range (infinite); then the whole call is redone with
    libm's ``log2``.
    """
    bad = 0
    for k in range(n):
        bits = np.float64(x[k]).view(np.uint64)
        e = np.int64(bits >> np.uint64(52)) - 1023
        mantissa = bits & np.uint64((1 << 52) - 1)
        i = np.int64((mantissa + np.uint64(1 << (51 - LOG_TABLE_BITS))) >> np.uint64(52 - LOG_TABLE_BITS))
        m = np.uint64(mantissa | np.uint64(1023 << 52)).view(np.float64)
        r = (m - LOG_POINTS[i]) * LOG_RECIPROCAL[i]
        series = r * (1.0 + r * (-1.0 / 2 + r * (1.0 / 3 + r * (-1.0 / 4 + r * (1.0 / 5 + r * (-1.0 / 6 + r / 7))))))
        y = (np.float64(e) + LOG_OF_POINT[i]) + series * INV_LN2
        low = np.int64(np.float64(y).view(np.uint64) & np.uint64((1 << 29) - 1))
        bad += (abs(low - (1 << 28)) <= LOG_GUARD) | (e < 0) | (e > 1000)
        out[k] = np.float32(y)
    if bad:
        for k in range(n):
            out[k] = np.float32(np.log2(x[k]))
    return bad


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _make_keys(scaled, median, keys, k, low):
    """``keys[i] = (2**31 - 1 - bits(float32(scaled[i] / median[i]))) << low | keys[i]`` for ``i < k`` (``keys``
    holding the tokens); returns the smallest and largest of the ``2**31 - 1 - bits`` parts.

    A loop of its own over gathered arrays, with numpy's error model (no zero-division check; medians are positive),
    so that the divisions are vectorised: ~1.5 µs per 3,000-gene cell faster than dividing as the genes are read.
    """
    lo, hi = _U32_MAX, np.uint64(0)
    for i in range(k):
        ratio = np.float32(scaled[i] / median[i])
        inverse = _U32_MAX - np.uint64(ratio.view(np.uint32))
        keys[i] = (inverse << low) | keys[i]
        lo = min(lo, inverse)
        hi = max(hi, inverse)
    return lo, hi


@nb.njit(cache=True, nogil=True)
def _unpack_keys(keys, m, low, token_mask, ids, shifted):
    """From the first ``m`` sorted keys: the tokens into ``ids`` and ``1 + ratio`` (the logarithm's argument) into
    ``shifted`` (a loop of its own, vectorised)."""
    for i in range(m):
        ids[i] = np.int32(keys[i] & token_mask)
        ratio = np.uint32(_U32_MAX - (keys[i] >> low)).view(np.float32)
        shifted[i] = 1.0 + np.float64(ratio)


@nb.njit(cache=True, nogil=True)
def tokenize_csr(data, indices, indptr, keep, col_token, col_median, n_top, library_size, token_bits,
                 out_ids, out_values, out_lengths):
    """Rank each kept cell's genes and write its top ``n_top`` tokens and values; return the tokens written.

    Outputs are flat: kept cell ``i`` owns ``out_ids[offset_i : offset_i + out_lengths[i]]``; ``out_ids`` and
    ``out_values`` need room for ``sum(min(nnz_i, n_top))``; ``token_bits`` must hold the largest token id.
    Genes are ranked by ``ratio = float32(count * scale / median)`` (the value is ``log2(1 + ratio)``, so the
    order is the same) through the key ``(2**31 - 1 - bits(ratio)) << token_bits | token``, sorted ascending —
    ratio descending, then token ascending — by a radix sort of its leading bits (:func:`radix_sort_prefix`) and an
    exact finish (:func:`order_runs`). The logarithm is taken only for the genes kept (:func:`log2_many`).
    """
    max_nnz = 0
    for r in range(indptr.size - 1):
        max_nnz = max(max_nnz, indptr[r + 1] - indptr[r])
    keys = np.empty(max_nnz, np.uint64)
    tmp = np.empty(max_nnz, np.uint64)
    hist = np.empty((2, 1 << DIGIT_BITS), np.int64)
    scaled, median = np.empty(max_nnz, np.float64), np.empty(max_nnz, np.float64)
    shifted = np.empty(max(1, min(max_nnz, n_top)), np.float64)
    low = np.uint64(token_bits)
    token_mask = (np.uint64(1) << low) - np.uint64(1)
    pos = 0
    cell = 0
    for r in range(indptr.size - 1):
        if not keep[r]:
            continue
        scale = _cell_scale(data, indptr, r, library_size)
        k = 0
        for p in range(indptr[r], indptr[r + 1]):  # the genes ranked: gathered, so that _make_keys is vectorised
            j = indices[p]
            t = col_token[j]
            c = data[p]
            if t >= 0 and c > 0:
                scaled[k] = c * scale
                median[k] = col_median[j]
                keys[k] = np.uint64(t)
                k += 1
        lo, hi = _make_keys(scaled, median, keys, k, low)
        shift = _bucket_shift(lo, hi)
        radix_sort_prefix(keys, tmp, hist, k, token_bits, lo, shift)
        m = min(k, n_top)
        order_runs(keys, tmp, k, m, token_bits, lo, shift)
        _unpack_keys(keys, m, low, token_mask, out_ids[pos:pos + m], shifted)
        log2_many(shifted, out_values[pos:pos + m], m)
        out_lengths[cell] = m
        pos += m
        cell += 1
    return pos

