"""Committed notebooks are clean: no outputs, a commented `parameters` cell, no sys.path edits, no absolute
paths, a markdown header first and a metrics.json written last (DESIGN.md §2)."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks found under notebooks/"


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    dirty = [i for i, c in enumerate(cells(path)) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them (nbstripout, set up by `make setup`)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_tagged_and_every_knob_commented(path):
    tagged = [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    for line in source(tagged[0]).splitlines():
        if re.match(r"^[A-Z_][A-Z0-9_]*\s*=", line):
            assert "#" in line, f"{path.name}: parameter line without a comment: {line!r}"
    assert re.search(r"^PROFILE\s*=", source(tagged[0]), re.M), f"{path.name}: no PROFILE parameter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    """papermill's own parser must see every knob (it silently skips lines it cannot parse)."""
    from papermill.translators import PythonTranslator

    tagged = next(c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = [line.split("=")[0].strip() for line in source(tagged).splitlines()
                if re.match(r"^[A-Z_][A-Z0-9_]*\s*=", line)]
    parsed = [p.name for p in PythonTranslator.inspect({"source": source(tagged)})]
    assert parsed == assigned, f"{path.name}: papermill parses {parsed}, the cell assigns {assigned}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_header_paths_and_metrics(path):
    nb_cells = cells(path)
    assert nb_cells[0]["cell_type"] == "markdown" and source(nb_cells[0]).lstrip().startswith("#"), \
        f"{path.name}: the first cell must be a markdown header"
    code = "\n".join(source(c) for c in nb_cells if c["cell_type"] == "code")
    assert "sys.path" not in code, f"{path.name}: edits sys.path"
    assert not re.search(r"['\"](/home/|/Users/|/work/|/tmp/|C:\\\\)", code), f"{path.name}: hard-coded path"
    last_code = [source(c) for c in nb_cells if c["cell_type"] == "code"][-1]
    assert "metrics" in last_code, f"{path.name}: the last code cell must write metrics.json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sizes_come_from_the_one_profile_table(path):
    """No notebook keeps its own per-profile size table; those that size anything read gc_lib.core.profiles."""
    from gc_lib.core.profiles import NOTEBOOK_SIZES

    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    own_table = re.search(r"""["'](ci|local|full)["']\s*:\s*\{""", code)
    assert not own_table, f"{path.name}: a per-profile table in the notebook; move it to gc_lib.core.profiles"
    read = re.findall(r"""\.sizes\(\s*["']([0-9]{2}_\w+)["']\s*\)""", code)
    assert all(name == path.stem for name in read), f"{path.name}: reads the sizes of {read}"
    if path.stem in NOTEBOOK_SIZES:
        assert read, f"{path.name}: has an entry in NOTEBOOK_SIZES but never reads it"
