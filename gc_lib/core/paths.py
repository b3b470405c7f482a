"""Where the project reads and writes: one place for every directory, so no notebook hard-codes a path.

The project root is found, in order, from the ``GC_LIB_ROOT`` environment variable, from the current
directory or one of its parents that holds both ``gc_lib/`` and ``notebooks/`` (a clone), or from the
installed package's location. ``GC_LIB_DATA`` moves ``data/`` elsewhere (e.g. a big scratch disk)
without moving the code; ``GC_LIB_RAW`` does the same for downloads and ``GC_LIB_FIGURES`` for
figures. The test run uses these to keep the ``ci`` profile's outputs apart from the main job's while
sharing one download cache.

Layout (DESIGN.md §2): ``data/raw/`` holds downloads and is never modified after a fetch;
notebook ``NN_name`` writes only under ``data/NN_name/``; figures go to ``figures/``; executed
notebooks go to the git-ignored ``build/``.
"""
from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    env = os.environ.get("GC_LIB_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "gc_lib").is_dir() and (candidate / "notebooks").is_dir():
            return candidate
    package_parent = Path(__file__).resolve().parents[2]  # gc_lib/core/paths.py → the clone
    if (package_parent / "notebooks").is_dir():
        return package_parent
    return here


ROOT: Path = _find_root()
DATA_DIR: Path = Path(os.environ.get("GC_LIB_DATA", ROOT / "data")).expanduser().resolve()
RAW_DIR: Path = Path(os.environ.get("GC_LIB_RAW", ROOT / "data" / "raw")).expanduser().resolve()
ARCHIVE_DIR: Path = RAW_DIR / "archives"  # the wheels, source archives and .debs themselves
FIG_DIR: Path = Path(os.environ.get("GC_LIB_FIGURES", ROOT / "figures")).expanduser().resolve()
NOTEBOOK_DIR: Path = ROOT / "notebooks"
BUILD_DIR: Path = ROOT / "build"          # executed notebooks, per profile


def notebook_data_dir(notebook: str) -> Path:
    """The output directory of one notebook, e.g. ``notebook_data_dir("00_data")`` → ``data/00_data``."""
    path = DATA_DIR / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def figure_path(notebook: str, name: str, suffix: str = "png") -> Path:
    """Path of a figure: ``figures/{notebook}_{name}.{suffix}`` (the directory is created)."""
    FIG_DIR.mkdir(parents=True, exist_ok=True)
    return FIG_DIR / f"{notebook}_{name}.{suffix}"
