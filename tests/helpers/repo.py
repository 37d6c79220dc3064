"""The repository in tests: its root, its params shrunk to a seconds-long embedded run, and
fresh-clone-like temp copies in which DVC runs the real pipeline."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


VENV_BIN = Path(sys.executable).parent


def shrink_embedded(params: dict[str, Any]) -> dict[str, Any]:
    """The repository's params with the embedded dataset cut to a tiny, fast run."""
    params = copy.deepcopy(params)
    params["datasets"] = ["embedded"]
    params["download"]["embedded"]["options"]["num_images"] = 150
    params["validate"]["embedded"]["min_images_per_tag"] = 5
    params["train"]["embedded"].update(
        {"epochs": 1, "batch_size": 8, "image_size": 32, "max_steps_per_epoch": 3, "eval_batch_size": 64}
    )
    return params


def project_files() -> list[str]:
    """Files a fresh clone would have, plus untracked files git does not ignore."""
    listing = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [f for f in listing if (REPO_ROOT / f).is_file()]


def copy_repository(destination: Path, params: dict[str, Any]) -> Path:
    """A fresh-clone-like copy of the project in ``destination`` (own git repo, own stores),
    with ``params`` as its params.yaml and no pipeline outputs or locks."""
    for name in project_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    for generated in ("dvc.lock", "metrics"):
        path = destination / generated
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    with open(destination / "params.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump(params, handle, sort_keys=False)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=destination, check=True)
    subprocess.run([*git, "add", "-A"], cwd=destination, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=destination, check=True)
    return destination


def pipeline_env(root: Path) -> dict[str, str]:
    """Environment for running the pipeline in a copy: its venv first on PATH, local stores."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "PREFECT_HOME": str(root / ".state" / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONPATH": str(root),
        }
    )
    return env


def run_dvc(root: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dvc <args>`` in a repository copy (``env``: instead of :func:`pipeline_env`) and return its output."""
    result = subprocess.run(
        [str(VENV_BIN / "dvc"), *args], cwd=root, env=env or pipeline_env(root), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def clone_built(root: Path, destination: Path) -> Path:
    """A copy of a built repository (outputs, DVC cache, MLflow store, git history), for a test
    that changes params or reruns stages: the shared build stays as it was, whether the test
    passes or fails."""
    shutil.copytree(root, destination, symlinks=True)
    return destination
