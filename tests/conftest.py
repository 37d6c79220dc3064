"""Shared fixtures: the real params.yaml shrunken to a seconds-long embedded run, and temp
copies of the repository for end-to-end runs of DVC and Prefect."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.helpers.replicas import ReplicaHTTPServer
from tests.helpers.repo import REPO_ROOT, shrink_embedded

MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def mlflow_uris_restored() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` keeps the URI in a module global and also writes it into
    ``os.environ`` (for subprocesses): a test that pointed the library at its own short-lived
    server would leave every later test, and every subprocess they start, talking to a closed
    port. Each test ends with both put back as they were."""
    saved = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)  # also unsets the environment variable
        mlflow.set_registry_uri(None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def repo_params() -> dict[str, Any]:
    """params.yaml of the repository, as committed."""
    with open(REPO_ROOT / "params.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="session")
def tiny_params(repo_params: dict[str, Any]) -> dict[str, Any]:
    return shrink_embedded(repo_params)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[Any]:
    """One moto_server on 127.0.0.1 for the session (it takes about a second to start)."""
    from tests.helpers.replicas import MotoS3

    server = MotoS3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """The test machines share two cores: several OpenMP threads spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def http_root(tmp_path: Path) -> Path:
    """The folder the HTTP replica serves."""
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def http_replica(http_root: Path) -> Iterator[ReplicaHTTPServer]:
    """A threaded HTTP server on 127.0.0.1 serving ``http_root``, with fault injection."""
    server = ReplicaHTTPServer(http_root)
    try:
        yield server
    finally:
        server.close()

