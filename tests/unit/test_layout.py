"""The library's layout: stages import only earlier stages, every subpackage ships in the wheel, the API is real."""
import ast
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gc_lib

PACKAGE = Path(gc_lib.__file__).resolve().parent
STAGES = ["core", "inputs", "corpus", "priors", "model", "tasks"]  # in order: each may import only those before it


def gc_lib_imports(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every ``gc_lib`` import in one file, relative imports resolved."""
    package = ["gc_lib", *path.relative_to(package_dir).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "gc_lib"]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if module.split(".")[0] != "gc_lib":
                continue
            if module == "gc_lib":  # `from .. import x`: x is a subpackage, or the version
                found += [(node.lineno, f"gc_lib.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def test_every_module_lives_in_a_stage():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the stage subpackages: {loose}"
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(STAGES)


def test_stages_import_only_earlier_stages():
    violations = []
    for stage_index, stage in enumerate(STAGES):
        for path in sorted((PACKAGE / stage).glob("*.py")):
            for line, module in gc_lib_imports(path):
                target = stage_of(module)
                if module == "gc_lib.__version__":
                    continue
                if target is None or target > stage_index:
                    violations.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not violations, "imports of a later stage (or of the package root):\n" + "\n".join(violations)


def test_the_import_checker_sees_relative_and_late_imports(tmp_path):
    """The checker itself: a later-stage import inside a function, relative or absolute, is caught."""
    fake = tmp_path / "gc_lib" / "corpus" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..tasks import finetune\n    import gc_lib.model.architecture\n"
                    "from .vocab import Vocabulary\nfrom .. import __version__\nimport numpy\n")
    found = {m for _, m in gc_lib_imports(fake, tmp_path / "gc_lib")}
    assert found == {"gc_lib.tasks", "gc_lib.model.architecture", "gc_lib.corpus.vocab", "gc_lib.__version__"}
    assert [stage_of(m) for m in ("gc_lib.tasks", "gc_lib.model.architecture", "gc_lib.corpus.vocab")] == [5, 4, 2]


def test_stage_docstrings_say_what_they_own_and_may_import():
    for stage in STAGES:
        doc = (PACKAGE / stage / "__init__.py").read_text()
        assert doc.startswith('"""') and "Imports:" in doc, f"gc_lib.{stage}: docstring must name what it may import"


def test_public_api_has_real_signatures():
    assert sorted(gc_lib.__all__) == gc_lib.__all__
    for name in gc_lib.__all__:
        obj = getattr(gc_lib, name)
        assert obj.__module__.startswith("gc_lib."), name
        if inspect.isfunction(obj):
            kinds = {p.kind for p in inspect.signature(obj).parameters.values()}
            assert inspect.Parameter.VAR_KEYWORD not in kinds or name in {"open_census", "sample_census"}, \
                f"gc_lib.{name} hides its options behind **kwargs"
    assert "adata" in inspect.signature(gc_lib.embed).parameters
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gc_lib.nope  # noqa: B018


def test_import_gc_lib_stays_light():
    code = "import sys, gc_lib; print(int('torch' in sys.modules), int('numba' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0"], "import gc_lib must not import torch or numba"


def test_wheel_installs_every_subpackage(tmp_path):
    """Build a wheel of the clone, install it non-editable into a folder and import every subpackage from there."""
    source, wheel_dir, target = tmp_path / "source", tmp_path / "wheel", tmp_path / "site"
    # a copy of what the wheel is built from, so setuptools' build/ folder never lands in (or is reused from) the clone
    shutil.copytree(PACKAGE, source / "gc_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE.parent / name, source / name)
    # setuptools is in the environment (tensorboard needs it), so no isolated build environment is downloaded
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheel_dir), str(source)], check=True, cwd=tmp_path)
    wheel = next(wheel_dir.glob("gc_lib-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, cwd=tmp_path)
    modules = [f"gc_lib.{stage}.{p.stem}" for stage in STAGES for p in sorted((PACKAGE / stage).glob("*.py"))
               if p.stem != "__init__"]
    code = ("import importlib, gc_lib\n"
            f"assert gc_lib.__file__.startswith({str(target)!r}), gc_lib.__file__\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(len(gc_lib.__all__))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("GC_LIB_ROOT", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.strip()) == len(gc_lib.__all__)
