"""Execute the notebooks once each, in order, on the `ci` profile; tests then read their metrics.json.

A test asks for notebook ``NN_name`` through ``executed(name)``; every earlier notebook runs first (they
form a DAG through data/), so any single notebook test can be run on its own.
"""
import json

import pytest

from gc_lib.core import paths
from gc_lib.core.run_notebooks import execute_notebook, list_notebooks


class NotebookSession:
    """Runs each notebook at most once per test session and remembers failures."""

    def __init__(self):
        self.done: dict[str, Exception | None] = {}

    def executed(self, name: str) -> dict:
        order = list_notebooks()
        assert name in order, f"no notebook {name}; have {order}"
        for earlier in order[: order.index(name) + 1]:
            if earlier not in self.done:
                try:
                    execute_notebook(earlier, "ci", force=True)
                    self.done[earlier] = None
                except Exception as exc:  # remembered so later notebooks fail fast with the cause
                    self.done[earlier] = exc
            if self.done[earlier] is not None:
                pytest.fail(f"{earlier} failed: {self.done[earlier]}", pytrace=False)
        return json.loads((paths.DATA_DIR / name / "metrics.json").read_text())


@pytest.fixture(scope="session")
def notebooks():
    return NotebookSession()
