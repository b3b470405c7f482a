/* The corpus builder's first-pass kernels (value check, QC metrics, median histograms), compiled ahead of time:
 * gc_lib.corpus._kernels in C.
 *
 * Why a second copy: as for the ranking kernel (_rank_native.c), numba's first call in a process initialises its CPU
 * target, 0.2–0.3 s that the corpus builder paid before forking its workers; with these and the ranking kernel built,
 * the builder never starts numba. Same algorithms, same floating-point operations in the same order (build flags keep
 * contraction off), so the same results as the numba kernels (tests/unit/test_kernels_native.py compares them); read
 * gc_lib/corpus/_kernels.py for the why of each step. Values are float32 or float64 (`single` says which; the loader
 * sends other dtypes to numba); each value is widened to double as numba widens it. Column indices are checked.
 *
 * Called through ctypes (which releases the GIL); the PyInit below only makes the built file an importable module.
 */
#include "_native.h"

#define TABLE_BITS 10
#define CHECK_BLOCK 256
#define MANTISSA_BITS 52
#define CACHED_COUNTS 64

/* The bin table's slices per octave, as bits (gc_bin_table writes n_octaves << TABLE_BITS entries): the loader sizes
 * the table by it. */
int64_t gc_table_bits(void) { return TABLE_BITS; }

/* Whether v is not a count: NaN, infinite, negative or not an integer. */
static inline int not_a_count(double v) { return !(v >= 0 && v < INFINITY && v == floor(v)); }

/* Index of the first value that is not a count, or -1 (first_invalid_value). Blocks of CHECK_BLOCK values are
 * checked without an early exit, so that the check vectorises; a block with a bad value is then searched. */
static inline int64_t first_invalid(const void *data, int64_t n, int single) {
    for (int64_t start = 0; start < n; start += CHECK_BLOCK) {
        int64_t end = start + CHECK_BLOCK < n ? start + CHECK_BLOCK : n;
        int bad = 0;
        for (int64_t i = start; i < end; i++) bad |= not_a_count(value_at(data, i, single));
        if (!bad) continue;
        for (int64_t i = start; i < end; i++)
            if (not_a_count(value_at(data, i, single))) return i;
    }
    return -1;
}

FOR_EACH_CPU int64_t gc_first_invalid_value(const void *data, int64_t single, int64_t n) {
    return single ? first_invalid(data, n, 1) : first_invalid(data, n, 0);
}

/* Per cell: total counts, mitochondrial counts, expressed counted genes; two values per step (cell_metrics). */
static inline int64_t metrics(const void *data, int single, const int32_t *indices, const int64_t *indptr,
                              int64_t n_rows, const uint8_t *is_mito, const uint8_t *is_counted, int64_t n_cols,
                              double *total, double *mito, int32_t *n_counted) {
    for (int64_t r = 0; r < n_rows; r++) {
        double t0 = 0.0, t1 = 0.0, m = 0.0;
        int32_t k = 0;
        int64_t p = indptr[r], end = indptr[r + 1];
        for (; p + 2 <= end; p += 2) {
            double c0 = value_at(data, p, single), c1 = value_at(data, p + 1, single);
            int32_t j0 = indices[p], j1 = indices[p + 1];
            if (j0 < 0 || j0 >= n_cols || j1 < 0 || j1 >= n_cols) return GC_BAD_COLUMN;
            int ok0 = c0 > 0, ok1 = c1 > 0;
            t0 += ok0 ? c0 : 0.0;
            t1 += ok1 ? c1 : 0.0;
            if (is_mito[j0] || is_mito[j1])
                m += ((ok0 && is_mito[j0]) ? c0 : 0.0) + ((ok1 && is_mito[j1]) ? c1 : 0.0);
            k += (ok0 && is_counted[j0]) + (ok1 && is_counted[j1]);
        }
        if (p < end) {
            double c0 = value_at(data, p, single);
            int32_t j0 = indices[p];
            if (j0 < 0 || j0 >= n_cols) return GC_BAD_COLUMN;
            int ok0 = c0 > 0;
            t0 += ok0 ? c0 : 0.0;
            m += (ok0 && is_mito[j0]) ? c0 : 0.0;
            k += ok0 && is_counted[j0];
        }
        total[r] = t0 + t1;
        mito[r] = m;
        n_counted[r] = k;
    }
    return 0;
}

FOR_EACH_CPU int64_t gc_cell_metrics(const void *data, int64_t single, const int32_t *indices, const int64_t *indptr,
                        int64_t n_rows, const uint8_t *is_mito, const uint8_t *is_counted, int64_t n_cols,
                        double *total, double *mito, int32_t *n_counted) {
    return single ? metrics(data, 1, indices, indptr, n_rows, is_mito, is_counted, n_cols, total, mito, n_counted)
                  : metrics(data, 0, indices, indptr, n_rows, is_mito, is_counted, n_cols, total, mito, n_counted);
}

/* The median grid (gc_lib.corpus.medians.MedianGrid) as the kernels read it. */
typedef struct {
    int64_t integer_mode, n_exact, n_bins, first_exp, table_size;
    double log_lo, bins_per_octave;
    const int16_t *table;
} Grid;

/* Histogram bin of a positive value by its logarithm (median_bin). */
static inline int64_t median_bin(double v, const Grid *g) {
    if (g->integer_mode && v < g->n_exact) return (int64_t)v;
    int64_t b = (int64_t)floor((log2(v) - g->log_lo) * g->bins_per_octave);
    int64_t first = g->integer_mode ? g->n_exact : 0;
    b += first;
    if (b < first) b = first;
    if (b >= g->n_bins) b = g->n_bins - 1;
    return b;
}

/* Each 1/1024-octave slice's bin, or -1 where the slice straddles a bin edge (bin_table); size n_octaves << 10. */
void gc_bin_table(int64_t integer_mode, int64_t n_exact, double log_lo, double bins_per_octave, int64_t n_bins,
                  int64_t first_exp, int64_t n_octaves, int16_t *table) {
    Grid g = {integer_mode, n_exact, n_bins, first_exp, 0, log_lo, bins_per_octave, NULL};
    const uint64_t step = UINT64_C(1) << (MANTISSA_BITS - TABLE_BITS);
    for (int64_t i = 0; i < (n_octaves << TABLE_BITS); i++) {
        uint64_t exponent = (uint64_t)(first_exp + (i >> TABLE_BITS) + 1023);
        uint64_t first = (exponent << MANTISSA_BITS) | ((uint64_t)(i & ((1 << TABLE_BITS) - 1)) * step);
        int64_t a = median_bin(double_of_bits(first), &g), b = median_bin(double_of_bits(first + step - 1), &g);
        table[i] = a == b ? (int16_t)a : -1;
    }
}

/* The bin of positive v: from the table, else by its logarithm (_value_bin, _table_bin). */
static inline int64_t value_bin(double v, const Grid *g) {
    uint64_t bits = bits_of_double(v);
    int64_t octave = (int64_t)(bits >> MANTISSA_BITS) - 1023 - g->first_exp;
    if (octave >= 0 && (octave << TABLE_BITS) < g->table_size) {
        int64_t mantissa = (int64_t)((bits >> (MANTISSA_BITS - TABLE_BITS)) & ((1 << TABLE_BITS) - 1));
        int64_t b = g->table[(octave << TABLE_BITS) | mantissa];
        if (b >= 0) return b;
    }
    return median_bin(v, g);
}

/* Add the kept cells' non-zero values to hist[bin][slot] (add_to_histogram). */
static inline int64_t fill(uint32_t *hist, int64_t n_slots, const void *data, int single, const int32_t *indices,
                           const int64_t *indptr, int64_t n_rows, const uint8_t *keep, const int64_t *col_slot,
                           int64_t n_cols, double library_size, const Grid *g) {
    int64_t known[CACHED_COUNTS];  /* this cell's bin of each small integer count, -1: not yet found */
    for (int64_t r = 0; r < n_rows; r++) {
        if (!keep[r]) continue;
        double scale = cell_scale(data, single, indptr, r, library_size);
        for (int i = 0; i < CACHED_COUNTS; i++) known[i] = -1;
        for (int64_t p = indptr[r]; p < indptr[r + 1]; p++) {
            double c = value_at(data, p, single);
            int32_t j = indices[p];
            if (j < 0 || j >= n_cols) return GC_BAD_COLUMN;
            int64_t s = col_slot[j], b;
            if (!(c > 0 && s >= 0)) continue;
            if (g->integer_mode && c < g->n_exact) {
                hist[(int64_t)c * n_slots + s]++;
                continue;
            }
            int small = c < CACHED_COUNTS && (double)(int64_t)c == c;
            if (small && known[(int64_t)c] >= 0) {
                b = known[(int64_t)c];
            } else {
                b = value_bin(c * scale, g);
                if (small) known[(int64_t)c] = b;
            }
            hist[b * n_slots + s]++;
        }
    }
    return 0;
}

FOR_EACH_CPU int64_t gc_add_to_histogram(uint32_t *hist, int64_t n_slots, const void *data, int64_t single,
                            const int32_t *indices, const int64_t *indptr, int64_t n_rows, const uint8_t *keep,
                            const int64_t *col_slot, int64_t n_cols, double library_size, int64_t integer_mode,
                            int64_t n_exact, double log_lo, double bins_per_octave, int64_t n_bins,
                            const int16_t *table, int64_t table_size, int64_t first_exp) {
    Grid g = {integer_mode, n_exact, n_bins, first_exp, table_size, log_lo, bins_per_octave, table};
    return single ? fill(hist, n_slots, data, 1, indices, indptr, n_rows, keep, col_slot, n_cols, library_size, &g)
                  : fill(hist, n_slots, data, 0, indices, indptr, n_rows, keep, col_slot, n_cols, library_size, &g);
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels_native_lib",
                                    "gc_lib's first-pass corpus kernels in C, called through ctypes "
                                    "(gc_lib.corpus._kernels_native).", -1, NULL};

PyMODINIT_FUNC PyInit__kernels_native_lib(void) { return PyModule_Create(&module); }
