"""The corpus builder's first-pass kernels in C (gc_lib.corpus._kernels_native) against the numba kernels they copy
(gc_lib.corpus._kernels): the same first invalid value, QC metrics, bin tables and median histograms on random
chunks of float32 and float64 values, with and without library-size scaling, on both median grids; other dtypes
handed to numba; column indices checked; the builder calling them where built."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import random_csr_structure

from gc_lib.corpus import _kernels, _kernels_native, _native
from gc_lib.corpus.medians import COUNTS_GRID, SCALED_GRID, bin_lookup, empty_histogram

pytestmark = pytest.mark.skipif(_native.load("_kernels_native") is None, reason="the C first-pass kernels are not "
                                "built here (no C compiler at install); the builder uses the numba kernels")


def _chunk(rng, n_rows, n_cols, dtype, spread):
    indices, indptr = random_csr_structure(rng, n_rows, n_cols, n_cols)
    data = np.floor(rng.lognormal(0, spread, indptr[-1])).astype(dtype)  # zeros, small and large counts
    return data, indices, indptr


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 30), n_cols=st.integers(1, 300),
       dtype=st.sampled_from([np.float32, np.float64]), spread=st.sampled_from([1.0, 4.0, 12.0]),
       library_size=st.sampled_from([0.0, 1e4]), counts_grid=st.booleans())
def test_same_results_as_the_numba_kernels(seed, n_rows, n_cols, dtype, spread, library_size, counts_grid):
    rng = np.random.default_rng(seed)
    data, indices, indptr = _chunk(rng, n_rows, n_cols, dtype, spread)
    is_mito, is_counted = rng.random(n_cols) < 0.05, rng.random(n_cols) < 0.7
    assert _kernels_native.first_invalid_value(data) == _kernels.first_invalid_value(data) == -1
    for ours, theirs in zip(_kernels_native.cell_metrics(data, indices, indptr, is_mito, is_counted),
                            _kernels.cell_metrics(data, indices, indptr, is_mito, is_counted)):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    grid = COUNTS_GRID if counts_grid else SCALED_GRID
    col_slot = rng.integers(-1, n_cols, n_cols)  # columns ignored (-1) and shared slots
    keep = rng.random(n_rows) < 0.8
    hists = []
    for module in (_kernels_native, _kernels):
        hist = empty_histogram(n_cols, grid)
        module.add_to_histogram(hist, data, indices, indptr, keep, col_slot, library_size, grid.integer_mode,
                                grid.n_exact, grid.log_lo, grid.bins_per_octave, *bin_lookup(grid))
        hists.append(hist)
    np.testing.assert_array_equal(*hists)
    assert hists[0].sum() == np.count_nonzero((data > 0) & (col_slot[indices] >= 0)
                                              & np.repeat(keep, np.diff(indptr)))


@pytest.mark.parametrize("grid", [COUNTS_GRID, SCALED_GRID])
def test_the_bin_tables_are_numbas(grid):
    first = int(np.floor(grid.log_lo)) if not grid.integer_mode else min(int(np.floor(grid.log_lo)), 0)
    args = (grid.integer_mode, grid.n_exact, grid.log_lo, grid.bins_per_octave, grid.n_bins, first,
            int(np.ceil(grid.log_hi)) - first)
    ours, theirs = _kernels_native.bin_table(*args), _kernels.bin_table(*args)
    assert ours.dtype == theirs.dtype == np.int16 and (ours >= 0).mean() > 0.9
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("value", [np.nan, np.inf, -1.0, 2.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_first_invalid_value_is_found(value, dtype):
    data = np.array([3, 0, 1, value, 7, value], dtype)
    assert _kernels_native.first_invalid_value(data) == _kernels.first_invalid_value(data) == 3


def test_other_dtypes_go_to_numba():
    data, indices, indptr = np.array([3, -1, 5], np.int64), np.array([0, 1, 2], np.int64), np.array([0, 2, 3])
    flags = np.array([True, False, True])
    assert _kernels_native.first_invalid_value(data) == 1
    total, mito, n_counted = _kernels_native.cell_metrics(data, indices, indptr, flags, flags)
    assert total.tolist() == [3.0, 5.0] and mito.tolist() == [3.0, 5.0] and n_counted.tolist() == [1, 1]


def test_column_indices_are_checked():
    data, indices, indptr = np.ones(3, np.float32), np.array([0, 5, 1], np.int32), np.array([0, 3], np.int64)
    flags = np.zeros(3, bool)
    with pytest.raises(IndexError, match="outside the 3 columns"):
        _kernels_native.cell_metrics(data, indices, indptr, flags, flags)
    hist = empty_histogram(3, SCALED_GRID)
    with pytest.raises(IndexError, match="outside the 3 columns"):
        _kernels_native.add_to_histogram(hist, data, indices, indptr, np.ones(1, bool), np.arange(3), 0.0, False, 0,
                                         SCALED_GRID.log_lo, SCALED_GRID.bins_per_octave, *bin_lookup(SCALED_GRID))


def test_the_builder_uses_them_where_built(monkeypatch):
    assert _kernels_native.first_pass_kernels() is _kernels_native
    assert _kernels_native.kernel_name(_kernels_native.first_pass_kernels()) == "c"
    monkeypatch.setenv("GC_LIB_KERNELS", "numba")
    assert _kernels_native.first_pass_kernels() is _kernels
    assert _kernels_native.kernel_name(_kernels_native.first_pass_kernels()) == "numba"
