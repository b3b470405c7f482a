"""The ranking kernel in C (gc_lib.corpus._rank_native) against the numba kernel it copies: the same tokens, values
(bit for bit) and lengths on any CSR chunk, ties and libm's logarithm path included; its checks of what the numba
kernel trusts; the refusal of a library built from another source. The tokenizer's agreement with its reference and
with Geneformer (tests/unit/test_tokenizer.py) runs through whichever kernel loads — this one where it is built."""
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import random_csr_structure

from gc_lib.corpus import _native, _rank_kernels, _rank_native
from gc_lib.corpus.tokenizer import rank_rows

pytestmark = pytest.mark.skipif(_native.load("_rank_native") is None, reason="the C ranking kernel is not built "
                                "here (no C compiler at install); the tokenizer uses the numba kernel")


def _random_chunk(rng, n_rows, n_cols, max_nnz, integer):
    indices, indptr = random_csr_structure(rng, n_rows, n_cols, max_nnz)
    if integer:  # few distinct counts: many exact ties
        data = rng.integers(-1, 6, indptr[-1]).astype(np.float32)
    else:
        data = rng.lognormal(0, 2, indptr[-1]).astype(np.float32)
    return data, indices, indptr


def _run(kernel, data, indices, indptr, keep, col_token, col_median, n_top, library_size, token_bits):
    room = int(np.minimum(np.diff(indptr)[keep], n_top).sum())
    ids, values = np.full(room, -7, np.int32), np.full(room, np.nan, np.float32)
    lengths = np.full(int(keep.sum()), -7, np.int32)
    used = kernel(data, indices, indptr, keep, col_token, col_median, n_top, library_size, token_bits, ids, values,
                  lengths)
    return used, ids, values.view(np.uint32), lengths


def _assert_same(*args):
    used, ids, value_bits, lengths = _run(_rank_native.tokenize_csr, *args)
    expected = _run(_rank_kernels.tokenize_csr, *args)
    assert used == expected[0] == lengths.sum()
    np.testing.assert_array_equal(lengths, expected[3])
    np.testing.assert_array_equal(ids[:used], expected[1][:used])
    np.testing.assert_array_equal(value_bits[:used], expected[2][:used])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 40), n_cols=st.integers(1, 600),
       n_top=st.sampled_from([1, 3, 24, 25, 100, 2048]), library_size=st.sampled_from([0.0, 1e4]),
       integer=st.booleans(), shared_medians=st.booleans())
def test_same_bits_as_the_numba_kernel(seed, n_rows, n_cols, n_top, library_size, integer, shared_medians):
    rng = np.random.default_rng(seed)
    data, indices, indptr = _random_chunk(rng, n_rows, n_cols, min(n_cols, 500), integer)
    keep = rng.random(n_rows) < 0.8
    col_token = rng.permutation(n_cols + 40)[:n_cols].astype(np.int32) - 20  # some columns unknown (-1 … -20)
    col_token[col_token < 0] = -1
    col_median = np.full(n_cols, 2.0) if shared_medians else rng.uniform(0.1, 20, n_cols)
    token_bits = max(1, int(n_cols + 20).bit_length())
    _assert_same(data, indices, indptr, keep, col_token, col_median, n_top, library_size, token_bits)


def test_same_bits_on_long_tied_runs_and_full_width_tokens():
    """Thousands of genes with one count and one median (one radix bucket, sorted whole by the finishing radix
    sort), tokens using all 20 token bits, a span of ratios wider than the sorted bits."""
    rng = np.random.default_rng(5)
    n_cols = 5_000
    indptr = np.array([0, 3_000, 6_000, 9_000], np.int64)
    indices = np.concatenate([rng.choice(n_cols, 3_000, replace=False) for _ in range(3)]).astype(np.int32)
    data = np.concatenate([np.ones(3_000), rng.integers(1, 3, 3_000), rng.lognormal(0, 8, 3_000)]).astype(np.float32)
    col_token = rng.choice(2**20, n_cols, replace=False).astype(np.int32)
    col_median = np.ones(n_cols)
    for n_top in (1, 2048, 5_000):
        _assert_same(data, indices, indptr, np.ones(3, bool), col_token, col_median, n_top, 0.0, 20)


def test_a_cell_without_counts_gets_no_tokens_under_library_scaling():
    """Its total is 0: the scale is never used (both kernels; numba's raised ZeroDivisionError before)."""
    data, indices = np.array([4, 0, 0], np.float32), np.array([0, 1, 2], np.int32)
    indptr = np.array([0, 1, 1, 3], np.int64)  # cell 1 stores nothing, cell 2 stores zeros
    args = (data, indices, indptr, np.ones(3, bool), np.array([5, 6, 7], np.int32), np.ones(3), 8, 1e4, 3)
    _assert_same(*args)
    assert _run(_rank_native.tokenize_csr, *args)[3].tolist() == [1, 0, 0]


def test_values_that_are_not_counts_are_ranked_as_the_numba_kernel_ranks_them():
    """The C kernel tests ``count > 0`` on the float's bits (so that its loop vectorises): NaN of either sign, ±0 and
    negatives are left out, +inf, the largest float and subnormals are ranked, exactly as numba's ``c > 0``."""
    odd = np.array([np.nan, -np.nan, 0.0, -0.0, -1.0, -np.inf, np.inf, np.finfo(np.float32).max,
                    np.finfo(np.float32).smallest_subnormal, 1e-40, 3.0], np.float32)
    n = odd.size
    args = (odd, np.arange(n, dtype=np.int32), np.array([0, n], np.int64), np.ones(1, bool),
            np.arange(n, dtype=np.int32) + 4, np.linspace(0.5, 2.0, n), 32, 0.0, 5)
    _assert_same(*args)
    assert _run(_rank_native.tokenize_csr, *args)[3].tolist() == [5]


def _ratios_near_float32_rounding_boundaries(count: int) -> np.ndarray:
    """float32 ratios r whose log2(1 + r) lies within 64 float64 steps of a float32 rounding boundary (found by
    exhaustive search from r = 1): where the fast logarithm must hand over to libm."""
    found = []
    start = np.float32(1.0).view(np.uint32)
    while len(found) < count:
        ratios = np.arange(start, start + 2**22, dtype=np.uint32).view(np.float32)
        low = np.log2(1.0 + ratios.astype(np.float64)).view(np.uint64) & np.uint64((1 << 29) - 1)
        found.extend(ratios[np.abs(low.astype(np.int64) - (1 << 28)) <= 64][: count - len(found)])
        start += 2**22
    return np.array(found, np.float32)


def test_libms_path_at_float32_rounding_boundaries():
    ratios = _ratios_near_float32_rounding_boundaries(3)
    data = np.concatenate([ratios, np.arange(1, 500, dtype=np.float32)])
    indptr = np.array([0, data.size], np.int64)
    indices = np.arange(data.size, dtype=np.int32)
    args = (data, indices, indptr, np.ones(1, bool), indices.copy(), np.ones(data.size), 2048, 0.0, 10)
    _assert_same(*args)
    used, ids, value_bits, _ = _run(_rank_native.tokenize_csr, *args)
    expected = [np.float32(math.log2(1.0 + float(data[i]))) for i in ids[:used]]
    np.testing.assert_array_equal(value_bits[:used].view(np.float32), expected)


def _one_cell(**changes):
    args = dict(data=np.array([3, 1, 2], np.float32), indices=np.array([0, 2, 1], np.int32),
                indptr=np.array([0, 3], np.int64), keep=np.ones(1, bool), col_token=np.array([5, 6, 7], np.int32),
                col_median=np.ones(3), n_top=2, library_size=0.0, token_bits=3,
                out_ids=np.empty(2, np.int32), out_values=np.empty(2, np.float32), out_lengths=np.empty(1, np.int32))
    return {**args, **changes}


def test_checks_what_the_numba_kernel_trusts():
    assert _rank_native.tokenize_csr(**_one_cell()) == 2
    with pytest.raises(IndexError, match="outside the 3 columns"):
        _rank_native.tokenize_csr(**_one_cell(indices=np.array([0, 3, 1], np.int32)))
    with pytest.raises(ValueError, match="room for 1"):
        _rank_native.tokenize_csr(**_one_cell(out_ids=np.empty(1, np.int32)))
    with pytest.raises(ValueError, match="keep has 2 rows"):
        _rank_native.tokenize_csr(**_one_cell(keep=np.ones(2, bool)))
    with pytest.raises(TypeError, match="contiguous float32"):
        _rank_native.tokenize_csr(**_one_cell(data=np.array([3, 1, 2], np.float64)))
    with pytest.raises(TypeError, match="contiguous int64"):
        _rank_native.tokenize_csr(**_one_cell(indptr=np.array([0, 9, 3, 9], np.int64)[::2]))


@pytest.mark.parametrize("edited", ["_rank_native.c", "_native.h"])
def test_a_library_built_from_other_sources_is_refused(tmp_path, edited):
    for name in ("_rank_native.c", "_native.h"):
        text = Path(_native.__file__).with_name(name).read_text()
        (tmp_path / name).write_text(text + "\n/* edited since the build */\n" * (name == edited))
    with pytest.warns(UserWarning, match="built from another _rank_native.c or _native.h"):
        assert _native.load.__wrapped__("_rank_native", tmp_path) is None
    (tmp_path / "_rank_native.c").unlink()  # an installed wheel without sources: the built library is trusted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _native.load.__wrapped__("_rank_native", tmp_path) is not None


def test_a_library_with_another_log_table_is_refused(monkeypatch):
    monkeypatch.setattr(_rank_native, "LOG_TABLE_BITS", _rank_native.LOG_TABLE_BITS + 1)
    with pytest.raises(RuntimeError, match="log2 table of 7 bits, gc_lib.corpus._log2_table has 8"):
        _rank_native._library.__wrapped__()


def test_the_tokenizer_ranks_with_the_compiled_kernel(monkeypatch):
    calls = []
    monkeypatch.setattr(_rank_native, "tokenize_csr", lambda *args: calls.append(args) or 0)
    rank_rows(np.zeros((1, 3), np.float32), np.arange(3, dtype=np.int32), np.ones(3), n_top=2, library_size=None,
              n_tokens=3)
    assert len(calls) == 1


def test_a_process_that_ranks_and_builds_with_the_c_kernels_never_imports_numba(tmp_path):
    """Importing numba costs ~0.25 s; the numba kernels' modules load only when a numba kernel is chosen."""
    script = (
        "import sys\n"
        "from gc_lib.corpus import builder\n"
        "from gc_lib.corpus._passes import warm_kernels\n"
        "warm_kernels()  # every first-pass kernel and the ranking kernel, as build_corpus runs them\n"
        "print('numba' in sys.modules)\n"
        "from gc_lib.corpus._rank_native import ranking_kernel\n"
        "import os; os.environ['GC_LIB_KERNELS'] = 'numba'; ranking_kernel()\n"
        "print('numba' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "GC_LIB_KERNELS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_the_environment_variable_picks_the_kernel(monkeypatch):
    monkeypatch.setenv("GC_LIB_KERNELS", "numba")
    assert _rank_native.ranking_kernel() is _rank_kernels.tokenize_csr
    monkeypatch.setenv("GC_LIB_KERNELS", "c")
    assert _rank_native.ranking_kernel() is _rank_native.tokenize_csr
    assert _rank_native.kernel_name(_rank_native.ranking_kernel()) == "c"
    monkeypatch.setattr(_native, "load", lambda name: None)  # as where it is not built
    with pytest.raises(RuntimeError, match="not built"):
        _rank_native.ranking_kernel()
    monkeypatch.setenv("GC_LIB_KERNELS", "auto")
    assert _rank_native.kernel_name(_rank_native.ranking_kernel()) == "numba"
    monkeypatch.setenv("GC_LIB_KERNELS", "C ")
    with pytest.raises(ValueError, match="expected one of"):
        _rank_native.ranking_kernel()
