"""Streaming non-zero medians (gc_lib.corpus.medians with the gc_lib.corpus._kernels.add_to_histogram kernel).

Checked against numpy.median of each gene's non-zero values: exact for counts 1-255 on COUNTS_GRID, within
median_error_bound for large counts and for library-size scaled values on SCALED_GRID; unexpressed genes,
cells with keep=False and columns with col_slot -1 are handled.
"""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gc_lib.corpus._kernels import add_to_histogram, median_bin
from gc_lib.corpus.medians import (
    COUNTS_GRID,
    SCALED_GRID,
    bin_lookup,
    empty_histogram,
    grid_for,
    median_error_bound,
    medians_from_histogram,
)

EPS = 1e-9
PROPERTY = settings(max_examples=50, deadline=None)


def histogram(counts, grid, *, library_size=0.0, keep=None, col_slot=None, n_slots=None):
    """Histogram of a dense count matrix, built through its CSR arrays as the corpus builder does."""
    m = sp.csr_matrix(np.asarray(counts, dtype=np.float32))
    n_cells, n_genes = m.shape
    keep = np.ones(n_cells, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    col_slot = np.arange(n_genes, dtype=np.int64) if col_slot is None else np.asarray(col_slot, dtype=np.int64)
    hist = empty_histogram(n_genes if n_slots is None else n_slots, grid)
    add_to_histogram(hist, m.data.astype(np.float32), m.indices.astype(np.int32), m.indptr.astype(np.int64),
                     keep, col_slot, float(library_size), grid.integer_mode, grid.n_exact, grid.log_lo,
                     grid.bins_per_octave, *bin_lookup(grid))
    return hist


def numpy_medians(values):
    """Per column of a dense value matrix: numpy's median of its non-zero values (NaN if none) and their count."""
    values = np.asarray(values, dtype=np.float64)
    medians = np.array([np.median(col[col > 0]) if (col > 0).any() else np.nan for col in values.T])
    return medians, (values > 0).sum(axis=0)


def count_matrices(max_count, max_cells=40, max_genes=8):
    shapes = st.tuples(st.integers(1, max_cells), st.integers(1, max_genes))
    elements = st.one_of(st.just(0), st.integers(1, max_count))  # about half zeros: sparse, some genes unexpressed
    return shapes.flatmap(lambda shape: arrays(np.int64, shape, elements=elements))


def test_stated_bounds_are_small_and_grids_match_options():
    assert 0 < median_error_bound(COUNTS_GRID) < 0.034
    assert 0 < median_error_bound(SCALED_GRID) < 0.029
    assert grid_for(None) is COUNTS_GRID
    assert grid_for(1e4) is SCALED_GRID
    assert COUNTS_GRID.as_dict()["relative_error_bound"] == median_error_bound(COUNTS_GRID)


@pytest.mark.parametrize("grid, value", [(COUNTS_GRID, 256.0), (SCALED_GRID, 2.0 ** -16)])
def test_bound_is_reached_at_a_bin_edge(grid, value):
    # a single value on the lower edge of a log-spaced bin is read as the bin's geometric centre
    median, n, exact = medians_from_histogram(histogram([[value]], grid), grid)
    assert n.tolist() == [1] and exact.tolist() == [False]
    assert median[0] / value - 1 == pytest.approx(median_error_bound(grid), rel=1e-9)


@PROPERTY
@given(counts=count_matrices(255), keep_seed=st.integers(0, 2**32 - 1))
def test_small_counts_are_exact(counts, keep_seed):
    keep = np.random.default_rng(keep_seed).random(counts.shape[0]) < 0.8
    median, n_nonzero, exact = medians_from_histogram(histogram(counts, COUNTS_GRID, keep=keep), COUNTS_GRID)
    expected, expected_n = numpy_medians(counts[keep])  # dropped cells count for nothing
    np.testing.assert_array_equal(n_nonzero, expected_n)
    np.testing.assert_array_equal(median, expected)  # exact, NaN where unexpressed
    np.testing.assert_array_equal(exact, expected_n > 0)


def test_even_number_of_values_gives_mean_of_middle_two():
    counts = np.array([[1, 7, 0], [4, 8, 0], [0, 0, 0], [9, 200, 0], [3, 255, 0]])
    median, n_nonzero, exact = medians_from_histogram(histogram(counts, COUNTS_GRID), COUNTS_GRID)
    np.testing.assert_array_equal(median, [3.5, 104.0, np.nan])
    assert n_nonzero.tolist() == [4, 4, 0]
    assert exact.tolist() == [True, True, False]


@PROPERTY
@given(counts=count_matrices(10**6))
def test_large_counts_within_bound(counts):
    median, n_nonzero, exact = medians_from_histogram(histogram(counts, COUNTS_GRID), COUNTS_GRID)
    expected, expected_n = numpy_medians(counts)
    np.testing.assert_array_equal(n_nonzero, expected_n)
    expressed = expected_n > 0
    assert np.isnan(median[~expressed]).all() and not exact[~expressed].any()
    rel = np.abs(median[expressed] / expected[expressed] - 1)
    assert (rel <= median_error_bound(COUNTS_GRID) + EPS).all(), rel.max()
    assert not exact[expressed & (expected >= 256)].any()
    np.testing.assert_array_equal(median[exact], expected[exact])  # "exact" medians really are


@PROPERTY
@given(counts=count_matrices(1000), library_size=st.sampled_from([1.0, 1e3, 1e4, 1e6]))
def test_library_size_scaled_within_bound(counts, library_size):
    counts[:, 0] += 1  # no empty cells: every kept cell has a total
    hist = histogram(counts, SCALED_GRID, library_size=library_size)
    median, n_nonzero, exact = medians_from_histogram(hist, SCALED_GRID)
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    expected, expected_n = numpy_medians(counts.astype(np.float64) * (library_size / totals))
    np.testing.assert_array_equal(n_nonzero, expected_n)
    expressed = expected_n > 0
    assert np.isnan(median[~expressed]).all()
    rel = np.abs(median[expressed] / expected[expressed] - 1)
    assert (rel <= median_error_bound(SCALED_GRID) + EPS).all(), rel.max()
    assert not exact.any()  # scaled grids have no exact bins


def test_scaling_uses_each_cells_total():
    # per cell: 5 of 10 counts and 5 of 1000 counts -> 5000 and 50 per 1e4; the median of the pair is 2525
    counts = np.array([[5, 5, 0], [5, 0, 995]])
    median, n_nonzero, _ = medians_from_histogram(histogram(counts, SCALED_GRID, library_size=1e4), SCALED_GRID)
    assert n_nonzero.tolist() == [2, 1, 1]
    expected = np.array([2525.0, 5000.0, 9950.0])
    assert (np.abs(median / expected - 1) <= median_error_bound(SCALED_GRID) + EPS).all()
    unscaled, _, _ = medians_from_histogram(histogram(counts, SCALED_GRID), SCALED_GRID)
    assert abs(unscaled[0] / 5 - 1) <= median_error_bound(SCALED_GRID) + EPS


def test_unexpressed_gene():
    counts = np.array([[0, 3], [0, 0], [0, 1]])
    median, n_nonzero, exact = medians_from_histogram(histogram(counts, COUNTS_GRID), COUNTS_GRID)
    assert np.isnan(median[0]) and n_nonzero[0] == 0 and not exact[0]
    assert median[1] == 2.0 and n_nonzero[1] == 2 and exact[1]


def test_cells_not_kept_are_ignored():
    counts = np.array([[1, 2], [100, 200], [3, 0], [50, 60]])
    keep = np.array([True, False, True, False])
    hist = histogram(counts, COUNTS_GRID, keep=keep)
    np.testing.assert_array_equal(hist, histogram(counts[keep], COUNTS_GRID))
    median, n_nonzero, _ = medians_from_histogram(hist, COUNTS_GRID)
    assert median.tolist() == [2.0, 2.0] and n_nonzero.tolist() == [2, 1]


def test_columns_map_to_slots_and_minus_one_is_ignored():
    counts = np.array([[1, 9, 4, 7], [3, 9, 0, 7], [5, 9, 6, 0]])
    col_slot = np.array([2, -1, 0, 1])  # column 1 (all 9s) is ignored
    hist = histogram(counts, COUNTS_GRID, col_slot=col_slot, n_slots=3)
    median, n_nonzero, exact = medians_from_histogram(hist, COUNTS_GRID)
    assert median.tolist() == [5.0, 7.0, 3.0]
    assert n_nonzero.tolist() == [2, 2, 3]
    assert exact.all()
    assert hist[9].sum() == 0 and hist.sum() == 7


def test_histograms_add_up_across_chunks():
    # workers fill separate histograms whose sum is the histogram of all cells
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 2000, size=(60, 5)) * (rng.random((60, 5)) < 0.5)
    whole = histogram(counts, COUNTS_GRID)
    np.testing.assert_array_equal(histogram(counts[:25], COUNTS_GRID) + histogram(counts[25:], COUNTS_GRID), whole)
    assert whole.dtype == np.uint32 and whole.shape == (COUNTS_GRID.n_bins, 5)


@pytest.mark.parametrize("grid", [COUNTS_GRID, SCALED_GRID], ids=["counts", "scaled"])
def test_the_bin_table_gives_the_bins_of_the_logarithm(grid):
    """Every value binned through the table (add_to_histogram) lands where median_bin's log2 puts it: random
    values over and beyond the grid, integers, every bin edge and the floats on either side of it."""
    rng = np.random.default_rng(0)
    k = np.arange(grid.n_bins - grid.first_log_bin + 1)
    edges = 2.0 ** (grid.log_lo + k / grid.bins_per_octave)
    values = np.concatenate([2.0 ** rng.uniform(grid.log_lo - 3, grid.log_hi + 3, 200_000), np.arange(1.0, 4097.0),
                             edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf),
                             np.nextafter(np.arange(1.0, 300.0), 0)])
    values = values[values < 3e38].astype(np.float32)  # the kernel reads float32 data (library_size 0: unscaled)
    hist = empty_histogram(1, grid)
    add_to_histogram(hist, values, np.zeros(len(values), np.int32), np.arange(len(values) + 1, dtype=np.int64),
                     np.ones(len(values), bool), np.zeros(1, np.int64), 0.0, grid.integer_mode, grid.n_exact,
                     grid.log_lo, grid.bins_per_octave, *bin_lookup(grid))
    expected = np.bincount([median_bin(float(v), grid.integer_mode, grid.n_exact, grid.log_lo, grid.bins_per_octave,
                                       grid.n_bins) for v in values], minlength=grid.n_bins)
    np.testing.assert_array_equal(hist[:, 0], expected)
    table, _ = bin_lookup(grid)
    assert 0 < (table < 0).mean() < 0.05  # most slices answer without a logarithm
