"""HTTP downloads and many files at once (sdl.data.fetch.http, .jobs) against a local replica: retries, resume, verification."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from sdl.data.fetch.errors import FetchError
from sdl.data.fetch.http import fetch_url
from sdl.data.fetch.jobs import FetchJob, fetch_many
from tests.helpers.replicas import FAST_RETRY, ReplicaHTTPServer, random_bytes


@pytest.fixture
def served(http_root: Path) -> dict[str, bytes]:
    files = {"data/a.bin": random_bytes(300_000, 1), "data/b.bin": random_bytes(50_000, 2), "data/c.bin": random_bytes(10, 3)}
    for name, data in files.items():
        (http_root / name).parent.mkdir(parents=True, exist_ok=True)
        (http_root / name).write_bytes(data)
    return files


def test_fetch_and_skip_when_complete(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    dest = tmp_path / "out" / "a.bin"
    assert fetch_url(http_replica.url("data/a.bin"), dest, **FAST_RETRY) == dest
    assert dest.read_bytes() == served["data/a.bin"]
    assert not dest.with_name("a.bin.partial").exists()
    fetch_url(http_replica.url("data/a.bin"), dest, expected_size=300_000,
              sha256=hashlib.sha256(served["data/a.bin"]).hexdigest(), **FAST_RETRY)
    assert http_replica.hits["data/a.bin"] == 1  # complete and matching: not fetched again


def test_5xx_twice_then_ok(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/b.bin", "status", times=2, status=503)
    dest = fetch_url(http_replica.url("data/b.bin"), tmp_path / "b.bin", **FAST_RETRY)
    assert dest.read_bytes() == served["data/b.bin"]
    assert http_replica.hits["data/b.bin"] == 3


def test_429_honours_retry_after(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/c.bin", "status", status=429, retry_after="1")
    started = time.monotonic()
    fetch_url(http_replica.url("data/c.bin"), tmp_path / "c.bin", **FAST_RETRY)
    assert time.monotonic() - started >= 1.0  # waited as asked, not the 0.01 s backoff
    assert (tmp_path / "c.bin").read_bytes() == served["data/c.bin"]
    assert http_replica.hits["data/c.bin"] == 2


def test_connection_drop_resumes_with_range(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/a.bin", "drop", fraction=0.5)
    dest = fetch_url(http_replica.url("data/a.bin"), tmp_path / "a.bin", **FAST_RETRY)
    assert dest.read_bytes() == served["data/a.bin"]
    assert http_replica.hits["data/a.bin"] == 2
    (range_header,) = http_replica.ranges["data/a.bin"]
    assert range_header.startswith("bytes=") and int(range_header[6:].rstrip("-")) > 0


def test_truncated_body_is_retried(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/b.bin", "truncate", fraction=0.3)  # Content-Length says more than is sent
    dest = fetch_url(http_replica.url("data/b.bin"), tmp_path / "b.bin", **FAST_RETRY)
    assert dest.read_bytes() == served["data/b.bin"]
    assert http_replica.hits["data/b.bin"] == 2


def test_server_ignoring_range_gets_full_download(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/a.bin", "drop", fraction=0.4)
    http_replica.add_fault("data/a.bin", "ignore_range")
    dest = fetch_url(http_replica.url("data/a.bin"), tmp_path / "a.bin", **FAST_RETRY)
    assert dest.read_bytes() == served["data/a.bin"]  # not the first 40% twice


def test_persistent_5xx_names_url_and_attempts(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/c.bin", "status", times=100, status=500)
    url = http_replica.url("data/c.bin")
    with pytest.raises(FetchError, match="HTTP 500") as caught:
        fetch_url(url, tmp_path / "c.bin", retries=2, **FAST_RETRY)
    assert caught.value.source == url and url in str(caught.value) and "3 attempts" in str(caught.value)
    assert http_replica.hits["data/c.bin"] == 3
    assert not (tmp_path / "c.bin").exists()


def test_404_is_not_retried(http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_url(http_replica.url("data/none.bin"), tmp_path / "none.bin", **FAST_RETRY)
    assert http_replica.hits["data/none.bin"] == 1


def test_checksum_and_size_verification(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    url = http_replica.url("data/b.bin")
    with pytest.raises(FetchError, match="sha256"):
        fetch_url(url, tmp_path / "b.bin", sha256="0" * 64, retries=1, **FAST_RETRY)
    assert not (tmp_path / "b.bin").exists()
    stale = tmp_path / "stale.bin"
    stale.write_bytes(b"old version")
    fetch_url(url, stale, md5=hashlib.md5(served["data/b.bin"]).hexdigest(), **FAST_RETRY)
    assert stale.read_bytes() == served["data/b.bin"]  # wrong md5 on disk: fetched again


def test_fetch_many_counts_and_resumes(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/b.bin", "status", times=2, status=502)
    http_replica.add_fault("data/c.bin", "status", times=100, status=500)
    jobs = [FetchJob(name=n, dest=tmp_path / "many" / n, url=http_replica.url(n))
            for n in ("data/a.bin", "data/b.bin", "data/c.bin", "data/missing.bin")]
    report = fetch_many(jobs, workers=3, progress=False, retries=2, backoff=0.01, timeout=5)
    assert (report.fetched, report.skipped, report.failed) == (2, 0, 2)
    assert [name for name, _ in report.failures] == ["data/c.bin", "data/missing.bin"]
    assert "HTTP 500" in report.failures[0][1] and "HTTP 404" in report.failures[1][1]
    assert report.as_dict()["failed"] == 2
    hits = dict(http_replica.hits)
    again = fetch_many(jobs, workers=3, progress=False, retries=0, backoff=0.01, timeout=5)
    assert (again.fetched, again.skipped, again.failed) == (0, 2, 2)
    assert http_replica.hits["data/a.bin"] == hits["data/a.bin"]  # no finished file fetched twice
    assert http_replica.hits["data/b.bin"] == hits["data/b.bin"]


# --------------------------------------------------------------------------- archives


