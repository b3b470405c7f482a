"""The ranking kernel's vectorised log2 (gc_lib.corpus._rank_kernels.log2_many): the same float32 as libm's log2 on
the values the tokenizer meets, at float32 rounding boundaries (where it must hand over to libm) and out of range.
The ranking itself is tested through the tokenizer (tests/unit/test_tokenizer.py)."""
import numba as nb
import numpy as np
import pytest

from gc_lib.corpus._rank_kernels import log2_many


@nb.njit
def libm_log2_float32(x):
    """The reference: float32 of libm's float64 log2, as the kernel computed every value before."""
    out = np.empty(x.size, np.float32)
    for k in range(x.size):
        out[k] = np.float32(np.log2(x[k]))
    return out


def fast(x):
    out = np.empty(x.size, np.float32)
    return out, log2_many(x, out, x.size)


def test_values_of_normalised_counts_match_libm():
    rng = np.random.default_rng(3)
    ratios = np.concatenate([rng.lognormal(0, 3, 400_000), rng.uniform(0, 1e-3, 50_000),  # 1 + tiny ratios
                             np.arange(1, 50_000) / 7.0, 2.0 ** np.arange(-30, 60)]).astype(np.float32)
    x = 1.0 + ratios.astype(np.float64)  # how the kernel forms log2's argument
    out, _ = fast(x)
    np.testing.assert_array_equal(out, libm_log2_float32(x))
    assert fast(np.ones(3))[0].tolist() == [0.0, 0.0, 0.0]


def test_values_next_to_a_float32_rounding_boundary_take_libms_path():
    """x = 2**b for b halfway between two float32 neighbours: the fast float64 result is too close to the boundary
    to round on its own, so the call is redone with libm and still agrees with it."""
    y = np.float32(np.random.default_rng(4).uniform(0.01, 20, 2_000))
    halfway = (y.astype(np.float64) + np.nextafter(y, np.float32(np.inf)).astype(np.float64)) / 2
    x = np.exp2(halfway)
    out, redone = fast(x)
    assert redone > 0
    np.testing.assert_array_equal(out, libm_log2_float32(x))
    # one such value among ordinary ones: the whole call agrees with libm
    mixed = np.concatenate([1.0 + np.arange(1, 2_000) / 3.0, x[:1]])
    out, redone = fast(mixed)
    assert redone >= 1
    np.testing.assert_array_equal(out, libm_log2_float32(mixed))


@pytest.mark.parametrize("value", [np.inf, 2.0 ** 1020])
def test_out_of_range_values_take_libms_path(value):
    x = np.array([1.5, value, 3.0])
    out, redone = fast(x)
    assert redone >= 1
    np.testing.assert_array_equal(out, libm_log2_float32(x))
