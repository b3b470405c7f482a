"""Loading the corpus stage's kernels compiled ahead of time (C, built at install by setup.py), and choosing them.

Why compiled twice: the corpus kernels exist in numba (``_kernels``, ``_rank_kernels``) and in C (``_kernels_native.c``,
``_rank_native.c``: the same algorithms and floating-point operations, tested bit for bit against numba's). numba
initialises its CPU target at a process's first call, 0.2–0.3 s with the garbage collection it sets off
(benchmarks/RESULTS.md); a C library costs a ``dlopen``. Where the C libraries are built, no corpus kernel starts
numba; where they are not (no C compiler at install), the numba kernels run, with the same results.

A library is refused (:func:`load` returns ``None``, with a warning) when the ``.c`` beside it, or the shared
``_native.h``, differs from the one it was built from (their sha256 is built in): an editable install not rebuilt
since the sources changed (``pip install -e .`` rebuilds it). The environment variable ``GC_LIB_KERNELS`` overrides
the choice: ``numba`` takes the numba kernels (to compare, or to rule the C ones out), ``c`` requires the C ones,
``auto`` (or unset) takes C where it loads.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib
import importlib.util
import os
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

KERNEL_VARIABLE, KERNEL_CHOICES = "GC_LIB_KERNELS", ("auto", "c", "numba")
HEADER = "_native.h"  # included by every C source, part of each library's source digest
BAD_COLUMN = -2  # a kernel's return value for a column index outside the chunk's columns (_native.h's GC_BAD_COLUMN)


@functools.cache
def load(name: str, source_dir: Path | None = None) -> ctypes.CDLL | None:
    """The library built from ``<name>.c`` (module ``gc_lib.corpus.<name>_lib``), or ``None``: absent, or built from
    other sources than those in ``source_dir`` (default: this package's folder; absent there, as in an installed wheel
    without sources, the library is trusted)."""
    spec = importlib.util.find_spec(f"{__package__}.{name}_lib")
    if spec is None or spec.origin is None:
        return None
    library = ctypes.CDLL(spec.origin)
    library.gc_source_sha256.restype = ctypes.c_char_p
    digest = source_digest(name, Path(source_dir or Path(__file__).parent))
    if digest is not None and library.gc_source_sha256().decode() != digest:
        warnings.warn(f"{spec.origin} was built from another {name}.c or {HEADER} than the ones beside it; using the "
                      "numba kernels until it is rebuilt (`pip install -e .` in the repository)", stacklevel=2)
        return None
    return library


def source_digest(name: str, folder: Path) -> str | None:
    """The sha256 of ``<name>.c`` and the shared header in ``folder``, as setup.py builds it into the library; ``None``
    where the sources are not there."""
    source, header = folder / f"{name}.c", folder / HEADER
    if not (source.exists() and header.exists()):
        return None
    return hashlib.sha256(source.read_bytes() + header.read_bytes()).hexdigest()


def use_c(name: str) -> bool:
    """Whether the kernels of ``<name>.c`` run compiled ahead of time (``GC_LIB_KERNELS`` and :func:`load`)."""
    choice = os.environ.get(KERNEL_VARIABLE, "auto")
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"{KERNEL_VARIABLE}={choice!r}: expected one of {KERNEL_CHOICES}")
    if choice == "numba":
        return False
    if load(name) is not None:
        return True
    if choice == "c":
        raise RuntimeError(f"{KERNEL_VARIABLE}=c, but {name}.c is not built (or is stale): install gc_lib where a C "
                           "compiler is found (`pip install -e .` in the repository)")
    return False


def numba_kernels(module: str) -> ModuleType:
    """The numba kernels' module ``gc_lib.corpus.<module>``, imported on first use: a process whose kernels all run from
    the C libraries never imports numba (~0.25 s)."""
    return importlib.import_module(f"{__package__}.{module}")


def pointer(array: np.ndarray, dtype: type) -> int:
    """The address of ``array``'s data, after checking what the C code will assume of it."""
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TypeError(f"the C kernel needs a contiguous {np.dtype(dtype)} array, got {array.dtype}")
    return array.ctypes.data


def declare(function, arguments: str, result=ctypes.c_int64):
    """Set a C function's argument types from a string of codes: ``p`` pointer, ``i`` int64, ``d`` double."""
    codes = {"p": ctypes.c_void_p, "i": ctypes.c_int64, "d": ctypes.c_double}
    function.argtypes, function.restype = [codes[c] for c in arguments], result
    return function


def check_columns(code: int, n_cols: int) -> None:
    """Raise ``IndexError`` where a C kernel returned :data:`BAD_COLUMN` (the numba kernels do not check indices)."""
    if code == BAD_COLUMN:
        raise IndexError(f"a column index of the chunk is outside the {n_cols} columns")
