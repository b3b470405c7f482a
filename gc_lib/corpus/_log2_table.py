"""The table of the ranking kernels' fast log2 (``log2_many`` in :mod:`gc_lib.corpus._rank_kernels` and in
``_rank_native.c``): one definition that both read, kept apart from the numba kernels so that a process ranking with
the C library never imports numba (~0.25 s).

The points are ``1 + i / 2**LOG_TABLE_BITS`` (``i = 0 … 2**LOG_TABLE_BITS``), with their reciprocals and log2s; the
C library is handed these arrays, so both kernels use the same bits.
"""
from __future__ import annotations

import numpy as np

LOG_TABLE_BITS = 7
LOG_POINTS = 1.0 + np.arange((1 << LOG_TABLE_BITS) + 1) / (1 << LOG_TABLE_BITS)
LOG_RECIPROCAL, LOG_OF_POINT = 1.0 / LOG_POINTS, np.log2(LOG_POINTS)
#: log2_many's float32 rounding is trusted when it is more than this many float64 steps from a float32 rounding
#: boundary (its error is a few steps); otherwise libm's log2 decides
LOG_GUARD = 64
INV_LN2 = 1.0 / np.log(2.0)
