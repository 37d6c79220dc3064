"""Fixtures for the dataset acquisition tests: a local HTTP replica and a moto S3 server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make `replicas` importable in any import mode

from replicas import ReplicaHTTPServer  # noqa: E402


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

