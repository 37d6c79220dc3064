"""The environment: requirements.lock matches pyproject.toml (what CI checks, and that the check
catches a drift), the layers (the library and `sdl tag` need neither DVC, Prefect nor Great
Expectations), and what is installed as packages (only `sdl`)."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers.repo import REPO_ROOT

PIPELINE_ONLY = ("dvc", "prefect", "great_expectations")


def _lock_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ci_lock", REPO_ROOT / ".ci" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_lock_matches_pyproject() -> None:
    lock = _lock_module()
    assert lock.check(REPO_ROOT) == []
    entries = lock.parse_lock((REPO_ROOT / "requirements.lock").read_text())
    assert "torch" not in entries and "torchvision" not in entries  # pinned by version in constraints.txt
    assert entries["animal-mnist"][0] == "0.4" and "tensorflow" not in entries  # declared without its deps
    assert entries["mlflow"][0].startswith("3.17.") and all(hashes for _, hashes in entries.values())


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "constraints.txt", "requirements.lock"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    return tmp_path


def test_the_check_names_a_dependency_added_without_relocking(copy: Path) -> None:
    lock = _lock_module()
    text = (copy / "pyproject.toml").read_text()
    (copy / "pyproject.toml").write_text(text.replace('    "tqdm>=4.66",\n', '    "tqdm>=4.66",\n    "leather>=0.4",\n'))
    problems = lock.check(copy)
    assert any("made from other dependencies" in p and "make lock" in p for p in problems), problems
    assert any(p.startswith("leather: required by pyproject.toml") for p in problems), problems


def test_the_check_names_a_pin_that_no_longer_satisfies_pyproject(copy: Path) -> None:
    lock = _lock_module()
    text = (copy / "pyproject.toml").read_text()
    (copy / "pyproject.toml").write_text(text.replace('"timm==1.0.31"', '"timm==1.0.32"'))
    assert any(p.startswith("timm: requirements.lock pins 1.0.31") for p in lock.check(copy))
    (copy / "constraints.txt").write_text("torch==2.3.0\ntorchvision==0.28.0\n")
    assert any("torch: constraints.txt pins torch==2.3.0" in p for p in lock.check(copy))


def test_the_check_runs_offline_in_ci_and_fails_there(copy: Path) -> None:
    shutil.copytree(REPO_ROOT / ".ci", copy / ".ci")
    (copy / "requirements.lock").write_text("\n".join(
        line for line in (REPO_ROOT / "requirements.lock").read_text().splitlines() if "mlflow==" not in line) + "\n")
    result = subprocess.run([sys.executable, str(copy / ".ci" / "lock.py"), "check"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 1 and "mlflow: required by pyproject.toml" in result.stderr, result.stderr
    assert "make setup" in (REPO_ROOT / ".ci" / "run").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert ".ci/lock.py check" in makefile and "--require-hashes --no-deps -r requirements.lock" in makefile
    assert "make lint" in (REPO_ROOT / ".ci" / "run").read_text() and "ruff check" in makefile


def test_the_core_layer_needs_no_pipeline_tool() -> None:
    """`pip install sdl-pipeline` (no extra) must give the library and `sdl tag`: DVC, Prefect
    and Great Expectations only come with [pipeline]; every sdl module imports without them
    (great_expectations is imported inside the validation functions, which only stages call)."""
    project = _project()["project"]
    names = {re.split(r"[\[<>=~! ;]", r, maxsplit=1)[0].replace("_", "-").lower() for r in project["dependencies"]}
    assert not names & {"dvc", "prefect", "great-expectations"}
    pipeline = {re.split(r"[\[<>=~! ;]", r, maxsplit=1)[0].replace("_", "-").lower()
                for r in project["optional-dependencies"]["pipeline"]}
    assert pipeline == {"dvc", "prefect", "great-expectations"}
    blocker = (
        "import sys, importlib.abc, pkgutil, importlib\n"
        f"BLOCKED = {PIPELINE_ONLY!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is not installed (core layer)')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import sdl\n"
        "for m in pkgutil.walk_packages(sdl.__path__, 'sdl.'):\n"
        "    importlib.import_module(m.name)\n"
        "from sdl.cli import build_parser\n"
        "build_parser().parse_args(['tag', 'x.png'])\n"
        "print('ok', len([n for n in sys.modules if n.startswith('sdl.')]))\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_great_expectations_is_imported_only_inside_the_validation_functions() -> None:
    for path in sorted((REPO_ROOT / "sdl").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top_level:
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(m.split(".")[0] in PIPELINE_ONLY for m in modules), f"{path}: {ast.unparse(node)}"


def test_only_the_library_is_a_package_stages_and_pipelines_run_from_the_checkout() -> None:
    found = _project()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert found == ["sdl*"]
    from setuptools import find_packages

    packages = find_packages(str(REPO_ROOT), include=found)
    assert packages and all(p == "sdl" or p.startswith("sdl.") for p in packages)
    assert (REPO_ROOT / "stages" / "__init__.py").is_file() and (REPO_ROOT / "pipelines" / "__init__.py").is_file()
