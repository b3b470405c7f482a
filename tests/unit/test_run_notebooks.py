"""The runner names the notebook and the cell that failed, and passes the profile as a parameter."""
import json

import nbformat
import pytest

from gc_lib.core.run_notebooks import NotebookFailed, execute_notebook, list_notebooks


def write_notebook(folder, name, cells):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell('PROFILE = "local"  # profile', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_failure_names_notebook_and_cell(tmp_path):
    write_notebook(tmp_path, "07_broken", ["x = 1", "import json\nraise ValueError('bad gene table')"])
    with pytest.raises(NotebookFailed) as info:
        execute_notebook("07_broken", "ci", notebook_dir=tmp_path, build_dir=tmp_path / "build")
    message = str(info.value)
    assert "07_broken.ipynb" in message and "code cell 3" in message and "'import json'" in message
    assert "ValueError: bad gene table" in message


def test_profile_reaches_the_notebook(tmp_path):
    cell = "import json, pathlib\npathlib.Path('seen.json').write_text(json.dumps(PROFILE))"
    write_notebook(tmp_path, "01_ok", [cell])
    run = execute_notebook("01_ok", "ci", notebook_dir=tmp_path, build_dir=tmp_path / "build")
    assert json.loads((tmp_path / "seen.json").read_text()) == "ci"
    assert run.output == tmp_path / "build" / "ci" / "01_ok.ipynb" and run.output.exists()
    assert list_notebooks(tmp_path) == ["01_ok"]


def test_unknown_profile_is_refused_before_running(tmp_path):
    write_notebook(tmp_path, "01_ok", ["raise SystemExit"])
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        execute_notebook("01_ok", "gpu", notebook_dir=tmp_path, build_dir=tmp_path / "build")
    assert not (tmp_path / "build").exists()
