"""dvc.yaml's deps cannot drift: each stage depends on every repository file its command
imports, transitively (every import, those inside functions too), so a change to any code a
stage runs makes ``dvc repro`` run it again."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from tests.helpers.imports import closure, module_file
from tests.helpers.repo import REPO_ROOT

SPEC = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
STAGES = list(SPEC["stages"])


def _command_file(stage: str) -> Path:
    words = shlex.split(SPEC["stages"][stage]["do"]["cmd"])
    module = words[words.index("-m") + 1]
    path = module_file(module)
    assert path is not None, f"{stage}: {module} is not a module of the repository"
    return path


def _code_deps(stage: str) -> list[str]:
    deps = [d if isinstance(d, str) else next(iter(d)) for d in SPEC["stages"][stage]["do"]["deps"]]
    return [d for d in deps if "${" not in d and d.split("/")[0] in ("sdl", "stages", "pipelines")]


def _covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO_ROOT)
    return any(relative == Path(d) or Path(d) in relative.parents for d in deps)


@pytest.mark.parametrize("stage", STAGES)
def test_deps_cover_the_import_closure(stage: str) -> None:
    deps = _code_deps(stage)
    missing = sorted(str(p.relative_to(REPO_ROOT)) for p in closure([_command_file(stage)]) if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs code it does not depend on: {', '.join(missing)}"


@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_exist(stage: str) -> None:
    stale = [d for d in _code_deps(stage) if not (REPO_ROOT / d).exists()]
    assert not stale, f"dvc.yaml stage {stage!r} depends on paths that do not exist: {stale}"


def test_the_walker_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The closure follows an import written inside a function (a lazy import is still run)."""
    found = {p.relative_to(REPO_ROOT) for p in closure([REPO_ROOT / "sdl" / "text" / "sources.py"])}
    assert Path("sdl/data/fetch/http.py") in found  # imported inside download_vectors()


def test_a_dep_left_out_is_named() -> None:
    """Without ``sdl/eval`` the evaluate stage's closure is not covered, and the check says which files."""
    deps = [d for d in _code_deps("evaluate") if d != "sdl/eval"]
    missing = {str(p.relative_to(REPO_ROOT)) for p in closure([_command_file("evaluate")]) if not _covered(p, deps)}
    assert "sdl/eval/metrics.py" in missing and "sdl/eval/model_evaluation.py" in missing
