"""Running the stages in tests.

- :func:`stage_argv` reads each stage's command from dvc.yaml, so these tests follow the
  stages' interface as the pipeline runs them.
- :func:`make_workdir` is a folder a stage can run in: params.yaml plus the tracked inputs
  the stages read besides data (vocabularies/, references/).
- :func:`run_stage` runs a stage's ``main()`` in process; :func:`stage_command` and
  :func:`subprocess_env` run it as ``python -m stages.<name>``.
"""

from __future__ import annotations

import copy
import importlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.repo import REPO_ROOT, VENV_BIN

D = "data/embedded"
THROUGH_EMBED = ("download", "validate", "split", "embed")


def stage_argv(stage: str, dataset: str = "embedded") -> tuple[str, list[str]]:
    """``(module, arguments)`` of a stage as dvc.yaml runs it (``python -m <module> <arguments>``)."""
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    words = shlex.split(spec["stages"][stage]["do"]["cmd"].replace("${item}", dataset))
    start = words.index("-m")
    return words[start + 1], words[start + 2 :]


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name`` in an argument list, or None."""
    flag = f"--{name}"
    return argv[argv.index(flag) + 1] if flag in argv else None


def write_params(root: Path, params: dict[str, Any]) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def make_workdir(root: Path, params: dict[str, Any]) -> Path:
    """``root`` as a place to run stages: params.yaml and the tracked non-data inputs."""
    root.mkdir(parents=True, exist_ok=True)
    write_params(root, params)
    for folder in ("vocabularies", "references"):
        if (REPO_ROOT / folder).is_dir() and not (root / folder).exists():
            shutil.copytree(REPO_ROOT / folder, root / folder)
    (root / "mlflow").mkdir(exist_ok=True)
    return root


def store_uri(root: Path) -> str:
    """The absolute sqlite URI of ``root``'s MLflow store (MLflow caches stores per URI)."""
    return f"sqlite:///{root}/mlflow/mlflow.db"


def pin_store(patch: pytest.MonkeyPatch, root: Path) -> None:
    """Point MLflow at ``root``'s store by an absolute URI, through the environment.

    Absolute: MLflow caches a store per URI string, so the relative default
    (``sqlite:///mlflow/mlflow.db``) would keep pointing at the first working directory it
    was used in, for every later test of the process. Through the environment: MLflow copies
    the URIs it is given into ``os.environ``; setting them here makes the monkeypatch put them
    back afterwards, so they never leak into other tests or their child processes."""
    (root / "mlflow").mkdir(exist_ok=True)
    patch.setenv("MLFLOW_TRACKING_URI", store_uri(root))
    patch.setenv("MLFLOW_REGISTRY_URI", store_uri(root))


def run_stage(stage: str, root: Path, *extra: str, dataset: str = "embedded") -> int:
    """A stage's ``main()`` in process, with the arguments dvc.yaml gives it, in ``root``."""
    module, argv = stage_argv(stage, dataset)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        pin_store(patch, root)
        return importlib.import_module(module).main([*argv, "--params", "params.yaml", *extra])


def subprocess_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment of a stage run as a subprocess in ``root``: this checkout's code, ``root``'s
    MLflow store, one thread (two shared cores; also what makes CPU runs repeat)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "PYTHONPATH": str(REPO_ROOT),
        "MLFLOW_TRACKING_URI": store_uri(root), "MLFLOW_REGISTRY_URI": store_uri(root),
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def stage_command(stage: str, dataset: str = "embedded", params: str = "params.yaml") -> list[str]:
    """The subprocess command line of a stage (this interpreter, dvc.yaml's arguments)."""
    module, argv = stage_argv(stage, dataset)
    return [sys.executable, "-m", module, *argv, "--params", params]


def copy_built(built: Path, destination: Path, params: dict[str, Any] | None = None) -> Path:
    """A private copy of the built project (without its MLflow store) to change things in."""
    shutil.copytree(built, destination, ignore=shutil.ignore_patterns("mlflow"))
    (destination / "mlflow").mkdir()
    if params is not None:
        write_params(destination, params)
    return destination


def variant(params: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``params`` with one dotted key set (created where missing)."""
    params = copy.deepcopy(params)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return params



def kill_group(process: subprocess.Popen[Any], sig: int = 9, grace: float = 60.0) -> None:
    """Send ``sig`` (SIGKILL by default) to a process started with start_new_session=True and
    to its children, then reap it; a group still there after ``grace`` seconds gets SIGKILL."""
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.Signals(sig))
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)


def wait_for(condition: Any, timeout: float, process: subprocess.Popen[Any] | None = None, step: float = 0.02) -> None:
    """Poll ``condition()`` until true; fail if ``timeout`` passes or ``process`` exits first."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited (status {process.returncode}) before the awaited point")
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(step)


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:``port`` with a sqlite store and proxied artifacts in
    ``folder`` (the same folder and port again: the same store back)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> str:
        import time

        import requests

        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db",
            "--artifacts-destination", str(self.folder / "artifacts"), "-h", "127.0.0.1", "-p", str(self.port),
            "--workers", "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        with open(self.folder / "server.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return self.url
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"mlflow server not up after {timeout} s")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process, 15)
        self.process = None
