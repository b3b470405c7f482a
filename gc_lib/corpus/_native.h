/* What the corpus stage's C kernels share (_rank_native.c, _kernels_native.c): the includes, the sha256 of the
 * sources a library was built from, a per-CPU build of the entry points, bit casts, the error code of a bad column,
 * reading a value of either float width, and a row's scale to the library size.
 * Its bytes are part of each library's source digest (setup.py, gc_lib.corpus._native), so a change here makes the
 * loader refuse libraries built before it. */
#ifndef GC_NATIVE_H
#define GC_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef GC_SOURCE_SHA256
#define GC_SOURCE_SHA256 ""
#endif

/* The sha256 of the sources this library was built from (setup.py defines it): the loader refuses a stale build. */
const char *gc_source_sha256(void) { return GC_SOURCE_SHA256; }

/* On x86-64 Linux (GCC, Clang) an entry point marked FOR_EACH_CPU is compiled three times, for AVX-512 (x86-64-v4),
 * AVX2 (v3) and the baseline, and the dynamic loader picks the one the CPU runs (an ifunc): divisions, logarithms and
 * floor() vectorise over 8 or 4 lanes where a baseline build has 2, or none (the ranking kernel: ~25% of its time on
 * an AVX-512 machine, as fast as numba, which compiles for the machine it runs on). Elsewhere it is compiled once,
 * for the build's target. */
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define FOR_EACH_CPU __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef FOR_EACH_CPU
#define FOR_EACH_CPU
#endif

/* A column index outside the chunk's columns (a kernel's return value; the loaders raise IndexError). */
#define GC_BAD_COLUMN (-2)

static inline uint64_t bits_of_double(double x) { uint64_t b; memcpy(&b, &x, 8); return b; }
static inline double double_of_bits(uint64_t b) { double x; memcpy(&x, &b, 8); return x; }

/* Value p of a float32 (single) or float64 array, as a double (numba widens float32 counts the same way). */
static inline double value_at(const void *data, int64_t p, int single) {
    return single ? (double)((const float *)data)[p] : ((const double *)data)[p];
}

/* library_size / row r's total (four running sums, added as _kernels._cell_scale adds them); 1 when off or the row
 * has no counts. Callers pass `single` as a constant, so each inlined copy reads one dtype. */
static inline double cell_scale(const void *data, int single, const int64_t *indptr, int64_t r, double library_size) {
    if (library_size <= 0) return 1.0;
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    int64_t p = indptr[r], end = indptr[r + 1];
    for (; p + 4 <= end; p += 4) {
        a0 += value_at(data, p, single); a1 += value_at(data, p + 1, single);
        a2 += value_at(data, p + 2, single); a3 += value_at(data, p + 3, single);
    }
    for (; p < end; p++) a0 += value_at(data, p, single);
    double total = (a0 + a1) + (a2 + a3);
    return total > 0 ? library_size / total : 1.0;
}

#endif
