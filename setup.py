"""gc_lib's compiled extensions, the corpus kernels in C (everything else is in pyproject.toml): the tokenizer's
ranking kernel and the corpus builder's first-pass kernels.

Optional: where no C compiler is found the install goes on without them and gc_lib uses the numba kernels (same
tokens, values and medians; a fresh process then pays numba's start-up, ~0.2–0.3 s). The sha256 of each C source is
built in, so that the loader (gc_lib.corpus._native) can refuse a library built from an older source — an editable
install whose .c changed since it was built.
"""
import hashlib
from pathlib import Path

from setuptools import Extension, setup

HEADER = "gc_lib/corpus/_native.h"  # included by every source; part of each one's digest


def kernels(name: str) -> Extension:
    """``gc_lib/corpus/<name>.c`` as the module ``gc_lib.corpus.<name>_lib``, the sha256 of its source and the shared
    header built in (the digest gc_lib.corpus._native.source_digest computes)."""
    source = f"gc_lib/corpus/{name}.c"
    digest = hashlib.sha256(Path(source).read_bytes() + Path(HEADER).read_bytes()).hexdigest()
    return Extension(
        f"gc_lib.corpus.{name}_lib", [source], depends=[HEADER], optional=True,
        define_macros=[("GC_SOURCE_SHA256", f'"{digest}"')],
        # numba's arithmetic: no fused multiply-add (the results must be the numba kernels' bits), full optimisation
        extra_compile_args=["-O3", "-ffp-contract=off"])


setup(ext_modules=[kernels("_rank_native"), kernels("_kernels_native")])
