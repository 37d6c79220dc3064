"""The house keeps its shape: no import circles, nothing imports upward, the config reads
without torch, only ``sdl.mlops`` talks to MLflow, and a metric name is parsed in one place.
Checked statically over every import, also those inside functions (tests/helpers/imports.py)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.imports import direct_imports, module_name, repository_modules
from tests.helpers.repo import REPO_ROOT

# Packages of sdl by layer: a module imports its own package and lower layers only.
LAYERS = {
    "sdl": 0, "sdl._torchvision_compat": 0, "sdl.safety": 0,
    "sdl.config": 1,
    "sdl.data": 2,
    "sdl.text": 3,
    "sdl.models": 4,
    "sdl.losses": 5, "sdl.eval": 5,
    "sdl.training": 6,
    "sdl.mlops": 7,
    "sdl.cli": 8,
}


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LAYERS and (i > 1 or module == "sdl"):
            return prefix, LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer of LAYERS: add its package")


def _graph() -> dict[str, set[str]]:
    return {module_name(p): direct_imports(p) for p in repository_modules("sdl")}


def test_every_module_belongs_to_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_nothing_imports_upward_or_outside_the_library() -> None:
    problems = []
    for module, imports in _graph().items():
        package, rank = _layer(module)
        for target in imports:
            if target.split(".")[0] in ("stages", "pipelines"):
                problems.append(f"{module} imports {target} (sdl never imports stages or pipelines)")
                continue
            target_package, target_rank = _layer(target)
            if target_package != package and target_rank >= rank and target_package != "sdl":
                problems.append(f"{module} ({package}, layer {rank}) imports {target} ({target_package}, layer {target_rank})")
    assert not problems, "\n".join(sorted(problems))


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target in graph and state.get(target) is None and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if state.get(module) is None and (cycle := visit(module)):
            pytest.fail("import circle: " + " -> ".join(cycle))


def _runs(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT)


def test_reading_params_loads_no_torch() -> None:
    """Every stage reads the params first; the retraining flow reads them to decide. Neither
    needs torch or timm (seconds of import, GBs of address space) for that."""
    result = _runs(
        "import sys\n"
        "import sdl.config, stages._common\n"
        "stages._common.load_dataset('params.yaml', 'embedded')\n"
        "bad = sorted(n for n in ('torch', 'timm', 'mlflow', 'great_expectations') if n in sys.modules)\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sdl_imports_no_prefect_or_dvc() -> None:
    result = _runs(
        "import pkgutil, importlib, sys, sdl\n"
        "for m in pkgutil.walk_packages(sdl.__path__, 'sdl.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('prefect', 'dvc'))\n"
        "print(len([n for n in sys.modules if n.startswith('sdl.')]), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[0]) >= 60  # the walk really imported the library's modules


def _imports_mlflow(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        plain = isinstance(node, ast.Import) and any(a.name.split(".")[0] == "mlflow" for a in node.names)
        named = isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mlflow"
        if plain or named:
            lines.append(node.lineno)
    return lines


def test_only_sdl_mlops_imports_mlflow() -> None:
    files = [*repository_modules("sdl"), *repository_modules("stages"), *repository_modules("pipelines")]
    offenders = [f"{p.relative_to(REPO_ROOT)}:{line}" for p in files
                 if not p.relative_to(REPO_ROOT).is_relative_to("sdl/mlops") for line in _imports_mlflow(p)]
    assert not offenders, "mlflow imported outside sdl/mlops: " + ", ".join(offenders)
    assert _imports_mlflow(REPO_ROOT / "sdl" / "mlops" / "tracking.py")  # the check sees imports


def test_a_metric_name_is_parsed_in_one_place() -> None:
    """``gzsl.f1@3`` is read by sdl.config.metric_names alone: no other module splits on '@' or
    matches the measure syntax with a regex of its own."""
    pattern = re.compile(r"""(split|partition|rsplit|rpartition|index|find)\(\s*["']@["']|@\(\[|@\[|@\\d""")
    offenders = []
    for path in repository_modules("sdl"):
        if path.name == "metric_names.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert pattern.search((REPO_ROOT / "sdl" / "config" / "metric_names.py").read_text())  # the scan would see it


def test_modules_and_functions_stay_short() -> None:
    """No module over 450 lines and no function over 100 (a longer one says why in its docstring)."""
    problems = []
    for path in [*repository_modules("sdl"), *repository_modules("stages"), *repository_modules("pipelines")]:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(REPO_ROOT)
        if len(text.splitlines()) > 450:
            problems.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            long = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 100
            if long and "longer than" not in (ast.get_docstring(node) or ""):
                problems.append(f"{where}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not problems, "\n".join(problems)
