"""Test-session set-up: keep the `ci` profile's outputs apart from the main job's.

Notebook outputs and figures of the test run go under ``build/ci/``; downloads stay shared in
``data/raw`` so a machine fetches the bundle once. Set here, before ``gc_lib`` is imported, so the test
process and the notebook kernels it starts (which inherit the environment) agree on every path.
"""
import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GC_LIB_ROOT", str(_ROOT))
os.environ.setdefault("GC_LIB_DATA", str(_ROOT / "build" / "ci" / "data"))
os.environ.setdefault("GC_LIB_FIGURES", str(_ROOT / "build" / "ci" / "figures"))
os.environ.setdefault("GC_LIB_RAW", str(_ROOT / "data" / "raw"))
os.environ.setdefault("MPLBACKEND", "Agg")
