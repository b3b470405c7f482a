"""Execute the numbered notebooks in order with papermill: the engine of `make run` and `make test`.

    python -m gc_lib.core.run_notebooks --profile local            # the main job
    python -m gc_lib.core.run_notebooks --profile ci --only 00_data

Executed copies go to ``build/<profile>/``, never back into ``notebooks/``. A failing notebook stops the
run with a message that names the notebook, the cell and the error.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .atomic import write_json
from .profiles import get_profile


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


@dataclass(frozen=True)
class NotebookRun:
    name: str       # e.g. "00_data"
    seconds: float  # wall time of the execution
    output: Path    # the executed copy


def list_notebooks(notebook_dir: Path = paths.NOTEBOOK_DIR) -> list[str]:
    """Names (without ``.ipynb``) of the numbered notebooks ``NN_name.ipynb``, in order."""
    return sorted(p.stem for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def _failed_cell(executed: Path) -> str:
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    # numbered as in the source notebook: papermill's injected-parameters cell is not counted
    code_cells = [c for c in nb.cells if c.cell_type == "code"
                  and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for number, cell in enumerate(code_cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"code cell {number} (starts {first_line[:60]!r})"
    return "an unknown cell"


def execute_notebook(name: str, profile: str, *, force: bool = False, parameters: dict | None = None,
                     notebook_dir: Path = paths.NOTEBOOK_DIR, build_dir: Path = paths.BUILD_DIR) -> NotebookRun:
    """Execute ``notebooks/{name}.ipynb`` with ``PROFILE=profile`` into ``build/{profile}/{name}.ipynb``.

    Raises :class:`NotebookFailed` (notebook, cell, error) when a cell raises.
    """
    import papermill as pm

    get_profile(profile)  # a clear error for an unknown profile, before anything runs
    source = notebook_dir / f"{name}.ipynb"
    if not source.exists():
        raise FileNotFoundError(f"no notebook {source}")
    output = build_dir / profile / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile, "FORCE": force, **(parameters or {})}
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(source), str(output), parameters=params, cwd=str(notebook_dir),
                            kernel_name="python3", progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(f"notebook {name}.ipynb failed in {_failed_cell(output)}: "
                             f"{exc.ename}: {exc.evalue}  (executed copy: {output})") from None
    return NotebookRun(name, time.perf_counter() - start, output)


def run_all(profile: str, *, only: list[str] | None = None, force: bool = False) -> list[NotebookRun]:
    """Execute every numbered notebook (or those in ``only``) in order; write ``build/<profile>/runs.json``."""
    names = list_notebooks()
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise ValueError(f"no such notebooks: {missing}; have {names}")
        names = [n for n in names if n in only]
    runs = []
    for name in names:
        print(f"[{profile}] executing {name} …", flush=True)
        run = execute_notebook(name, profile, force=force)
        print(f"[{profile}] {name}: {run.seconds:.1f} s → {run.output}", flush=True)
        runs.append(run)
    write_json([{"notebook": r.name, "seconds": round(r.seconds, 2), "output": str(r.output)} for r in runs],
               paths.BUILD_DIR / profile / "runs.json")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="local", help="ci, local (default) or full")
    parser.add_argument("--only", nargs="*", help="notebook names to run, e.g. 00_data")
    parser.add_argument("--force", action="store_true", help="recompute outputs that already exist")
    args = parser.parse_args(argv)
    try:
        run_all(args.profile, only=args.only, force=args.force)
    except NotebookFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
