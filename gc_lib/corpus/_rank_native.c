/* The tokenizer's ranking kernel, compiled ahead of time: gc_lib.corpus._rank_kernels.tokenize_csr in C.
 *
 * Why a second copy of a numba kernel: numba compiles (or loads from its cache) at a process's first call, and that
 * first call initialises numba's CPU target — 0.2–0.3 s of imports and set-up in every fresh process, as long as
 * tokenising a 20,000-cell file takes (benchmarks/RESULTS.md). Built at install (setup.py, optional: without a C
 * compiler gc_lib keeps the numba kernel), this copy has no such cost. The algorithm, the arithmetic and the order
 * of every floating-point operation are the numba kernel's, so both give the same bits (tests/unit/test_rank_native.py
 * checks them against each other); read gc_lib/corpus/_rank_kernels.py for the why of each step. One difference of
 * form, not of result: the keys of a row are made in a loop without branches (row_keys), which the compiler
 * vectorises, where the numba kernel gathers the ranked values first and divides after. Build flags keep
 * floating-point contraction off (-ffp-contract=off: no fused multiply-adds), as numba does.
 *
 * Called through ctypes (which releases the GIL), not as a Python function: the PyInit below only makes the built
 * file an importable module, so that Python's import machinery finds it.
 */
#include "_native.h"

#define SORTED_BITS 20
#define DIGIT_BITS 10
#define N_BUCKETS (1 << DIGIT_BITS)
#define SHORT_RUN 24
#define LOG_TABLE_BITS 7
#define U31_MAX UINT64_C(0x7FFFFFFF)

/* gc_tokenize_csr's error codes besides GC_BAD_COLUMN (>= 0 is the number of tokens written) */
#define GC_NO_MEMORY (-1)
#define GC_NO_ROOM (-3)

static inline uint32_t bits_of_float(float x) { uint32_t b; memcpy(&b, &x, 4); return b; }
static inline float float_of_bits(uint32_t b) { float x; memcpy(&x, &b, 4); return x; }

/* The log2 table's size, which the loader checks against the numba kernel's table it passes in. */
int64_t gc_log_table_bits(void) { return LOG_TABLE_BITS; }

/* Sort keys[:n] ascending: LSD radix over 8-bit digits, skipping constant digits (radix_sort_u64). */
static inline void radix_sort_u64(uint64_t *keys, uint64_t *tmp, int64_t n) {
    const int n_digits = 8;
    int64_t hist[8][256];
    memset(hist, 0, sizeof hist);
    for (int64_t i = 0; i < n; i++)
        for (int d = 0; d < n_digits; d++) hist[d][(keys[i] >> (8 * d)) & 255]++;
    uint64_t *src = keys, *dst = tmp;
    for (int d = 0; d < n_digits; d++) {
        int64_t *h = hist[d];
        int b = 0;
        while (h[b] == 0) b++;
        if (h[b] == n) continue;
        int64_t running = 0;
        for (b = 0; b < 256; b++) { int64_t c = h[b]; h[b] = running; running += c; }
        for (int64_t i = 0; i < n; i++) { uint64_t k = src[i]; dst[h[(k >> (8 * d)) & 255]++] = k; }
        uint64_t *t = src; src = dst; dst = t;
    }
    if (src != keys) memcpy(keys, src, (size_t)n * sizeof *keys);
}

/* Bits dropped from (ratio part - lo) so that the span hi - lo fits SORTED_BITS (_bucket_shift). */
static inline int bucket_shift(uint64_t lo, uint64_t hi) {
    uint64_t span = hi - lo;
    int n_bits = 0;
    while (span) { n_bits++; span >>= 1; }
    return n_bits > SORTED_BITS ? n_bits - SORTED_BITS : 0;
}

/* Stable sort of keys[:n] by bucket ((key >> low) - lo) >> shift, two 10-bit digits (radix_sort_prefix). */
static inline void radix_sort_prefix(uint64_t *keys, uint64_t *tmp, int64_t (*hist)[N_BUCKETS], int64_t n,
                                     int low, uint64_t lo, int shift) {
    const uint64_t mask = N_BUCKETS - 1;
    memset(hist, 0, 2 * N_BUCKETS * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = ((keys[i] >> low) - lo) >> shift;
        hist[0][v & mask]++;
        hist[1][v >> DIGIT_BITS]++;
    }
    uint64_t *src = keys, *dst = tmp;
    for (int d = 0; d < 2; d++) {
        int64_t *h = hist[d], running = 0;
        int varies = 1;
        for (int b = 0; b < N_BUCKETS; b++) {
            int64_t c = h[b];
            varies = varies && c != n;
            h[b] = running;
            running += c;
        }
        if (!varies) continue;
        int digit_shift = shift + DIGIT_BITS * d;
        for (int64_t i = 0; i < n; i++) {
            uint64_t k = src[i];
            dst[h[(((k >> low) - lo) >> digit_shift) & mask]++] = k;
        }
        uint64_t *t = src; src = dst; dst = t;
    }
    if (src != keys) memcpy(keys, src, (size_t)n * sizeof *keys);
}

/* Sort keys[i:j] ascending; an already-sorted run costs one scan (_sort_run). */
static inline void sort_run(uint64_t *keys, uint64_t *tmp, int64_t i, int64_t j) {
    int64_t q = i + 1;
    while (q < j && keys[q] >= keys[q - 1]) q++;
    if (q == j) return;
    if (j - i <= SHORT_RUN) {
        for (int64_t a = i + 1; a < j; a++) {
            uint64_t v = keys[a];
            for (q = a - 1; q >= i && keys[q] > v; q--) keys[q + 1] = keys[q];
            keys[q + 1] = v;
        }
    } else {
        radix_sort_u64(keys + i, tmp, j - i);
    }
}

/* Sort each run sharing a bucket by the whole key, for runs starting among the first m keys (order_runs). */
static inline void order_runs(uint64_t *keys, uint64_t *tmp, int64_t n, int64_t m, int low, uint64_t lo,
                              int shift) {
    int64_t i = 0;
    while (i < m) {
        uint64_t bucket = ((keys[i] >> low) - lo) >> shift;
        int64_t j = i + 1;
        while (j < n && (((keys[j] >> low) - lo) >> shift) == bucket) j++;
        if (j - i > 1) sort_run(keys, tmp, i, j);
        i = j;
    }
}

/* out[:n] = float32(log2(x[:n])) for x >= 1, as libm rounds it; a table and a series, libm where unsure (log2_many).
 * table: the numba kernel's 3 rows of 2**LOG_TABLE_BITS + 1 (points, their reciprocals, their log2s); guard: its
 * LOG_GUARD (both from gc_lib.corpus._log2_table, so the two kernels share one definition). */
static inline int64_t log2_many(const double *x, float *out, int64_t n, const double *table, double inv_ln2,
                                int64_t guard) {
    const int rows = (1 << LOG_TABLE_BITS) + 1;
    const double *points = table, *reciprocal = table + rows, *log_of_point = table + 2 * rows;
    int64_t bad = 0;
    for (int64_t k = 0; k < n; k++) {
        uint64_t bits = bits_of_double(x[k]);
        int64_t e = (int64_t)(bits >> 52) - 1023;
        uint64_t mantissa = bits & ((UINT64_C(1) << 52) - 1);
        int64_t i = (int64_t)((mantissa + (UINT64_C(1) << (51 - LOG_TABLE_BITS))) >> (52 - LOG_TABLE_BITS));
        double m = double_of_bits(mantissa | (UINT64_C(1023) << 52));
        double r = (m - points[i]) * reciprocal[i];
        double series = r * (1.0 + r * (-1.0 / 2 + r * (1.0 / 3 + r * (-1.0 / 4 + r * (1.0 / 5 + r * (-1.0 / 6
                                                                                                   + r / 7))))));
        double y = ((double)e + log_of_point[i]) + series * inv_ln2;
        int64_t low = (int64_t)(bits_of_double(y) & ((UINT64_C(1) << 29) - 1));
        int64_t distance = low - (INT64_C(1) << 28);
        bad += ((distance <= guard) & (distance >= -guard)) | (e < 0) | (e > 1000);  /* & not &&: vectorises */
        out[k] = (float)y;
    }
    if (bad)
        for (int64_t k = 0; k < n; k++) out[k] = (float)log2(x[k]);
    return bad;
}

/* The tokens and 1 + ratio (the logarithm's argument) of the first m sorted keys (_unpack_keys). */
static inline void unpack_keys(const uint64_t *keys, int64_t m, int low, int32_t *ids, double *shifted) {
    const uint64_t token_mask = (UINT64_C(1) << low) - 1;
    for (int64_t i = 0; i < m; i++) {
        ids[i] = (int32_t)(keys[i] & token_mask);
        shifted[i] = 1.0 + (double)float_of_bits((uint32_t)(U31_MAX - (keys[i] >> low)));
    }
}

/* Row r's ranked genes (known token, positive count) as sort keys in keys[:k], the smallest and largest of their
 * ratio parts in *lo and *hi; returns k, or GC_BAD_COLUMN. Written without branches so that the compiler vectorises
 * the loop over the row's stored values (gathers from the column tables, 4 or 8 divisions at a time): each value's
 * ratio part and token go to scratch (2 × 4 bytes per value; UINT32_MAX marks a value that is not ranked), then the
 * keys are assembled, squeezing out the unranked values where there are any. */
static inline int64_t row_keys(const float *counts, const int32_t *columns, int64_t n, int64_t n_cols,
                               const int32_t *col_token, const double *col_median, double scale, int low,
                               uint64_t *keys, uint32_t *scratch, uint64_t *lo, uint64_t *hi) {
    uint32_t outside = 0;
    for (int64_t i = 0; i < n; i++) outside |= (uint32_t)columns[i] >= (uint64_t)n_cols;
    if (outside) return GC_BAD_COLUMN;
    uint32_t *inverse = scratch, *tokens = scratch + n;
    uint32_t a = (uint32_t)U31_MAX, b = 0, n_ranked = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t j = columns[i];
        float c = counts[i];
        uint32_t part = (uint32_t)U31_MAX - bits_of_float((float)((c * scale) / col_median[j]));
        /* c > 0 on the bits (a positive, non-NaN float32): a float comparison would stop the vectoriser */
        uint32_t ranked = (uint32_t)(col_token[j] >= 0) & (uint32_t)(bits_of_float(c) - 1u < 0x7F800000u);
        uint32_t unranked = ranked - 1u;   /* all ones where not ranked */
        uint32_t for_lo = part | unranked, for_hi = part & ~unranked;
        inverse[i] = for_lo;
        tokens[i] = (uint32_t)col_token[j];
        n_ranked += ranked;
        a = for_lo < a ? for_lo : a;
        b = for_hi > b ? for_hi : b;
    }
    if ((int64_t)n_ranked == n) {
        for (int64_t i = 0; i < n; i++) keys[i] = ((uint64_t)inverse[i] << low) | tokens[i];
    } else {
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++) {
            keys[k] = ((uint64_t)inverse[i] << low) | tokens[i];
            k += inverse[i] != UINT32_MAX;
        }
    }
    *lo = a;
    *hi = b;
    return n_ranked;
}

/* _rank_kernels.tokenize_csr, with the same arguments plus n_cols and capacity (column indices and the outputs'
 * room are checked against them), the log2 table, 1/ln 2 and the log2 guard. Returns the tokens written, or an error
 * code. */
FOR_EACH_CPU int64_t gc_tokenize_csr(const float *data, const int32_t *indices, const int64_t *indptr, int64_t n_rows,
                        const uint8_t *keep, const int32_t *col_token, const double *col_median, int64_t n_cols,
                        int64_t n_top, double library_size, int64_t token_bits, int32_t *out_ids,
                        float *out_values, int64_t capacity, int32_t *out_lengths, const double *log_table,
                        double inv_ln2, int64_t log_guard) {
    int64_t max_nnz = 0;
    for (int64_t r = 0; r < n_rows; r++)
        if (indptr[r + 1] - indptr[r] > max_nnz) max_nnz = indptr[r + 1] - indptr[r];
    size_t room = (size_t)(max_nnz > 0 ? max_nnz : 1);
    uint64_t *keys = malloc(room * 8), *tmp = malloc(room * 8);
    double *shifted = malloc(room * 8);
    int64_t (*hist)[N_BUCKETS] = malloc(2 * N_BUCKETS * sizeof(int64_t));
    int64_t pos = GC_NO_MEMORY, cell = 0;
    int low = (int)token_bits;
    if (!keys || !tmp || !shifted || !hist) goto done;
    pos = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        if (!keep[r]) continue;
        double scale = cell_scale(data, 1, indptr, r, library_size);
        uint64_t lo, hi;
        int64_t k = row_keys(data + indptr[r], indices + indptr[r], indptr[r + 1] - indptr[r], n_cols, col_token,
                             col_median, scale, low, keys, (uint32_t *)tmp, &lo, &hi);
        if (k < 0) { pos = k; goto done; }
        int shift = bucket_shift(lo, hi);
        radix_sort_prefix(keys, tmp, hist, k, low, lo, shift);
        int64_t m = k < n_top ? k : n_top;
        if (pos + m > capacity) { pos = GC_NO_ROOM; goto done; }
        order_runs(keys, tmp, k, m, low, lo, shift);
        unpack_keys(keys, m, low, out_ids + pos, shifted);
        log2_many(shifted, out_values + pos, m, log_table, inv_ln2, log_guard);
        out_lengths[cell++] = (int32_t)m;
        pos += m;
    }
done:
    free(keys); free(tmp); free(shifted); free(hist);
    return pos;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rank_native_lib",
                                    "gc_lib's ranking kernel in C, called through ctypes (gc_lib.corpus._rank_native).",
                                    -1, NULL};

PyMODINIT_FUNC PyInit__rank_native_lib(void) { return PyModule_Create(&module); }
