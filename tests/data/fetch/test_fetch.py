"""Tests of sdl.data.fetch.core against local replicas: retries, resume, verification, S3, archives."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from tests.helpers.replicas import MotoS3, ReplicaHTTPServer

from sdl.data.fetch.errors import FetchError, UnsafeArchiveError
from sdl.data.fetch.jobs import FetchJob, fetch_many
from sdl.data.fetch.s3 import fetch_s3
from sdl.data.fetch.http import fetch_url
from sdl.data.fetch.archives import safe_extract
from sdl.data.kinds.registry import sample_evenly
from sdl.safety.safe_pickle import UnsafePickleError, safe_loads

FAST = {"backoff": 0.01, "timeout": 5}


def _blob(size: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


@pytest.fixture
def served(http_root: Path) -> dict[str, bytes]:
    files = {"data/a.bin": _blob(300_000, 1), "data/b.bin": _blob(50_000, 2), "data/c.bin": _blob(10, 3)}
    for name, data in files.items():
        (http_root / name).parent.mkdir(parents=True, exist_ok=True)
        (http_root / name).write_bytes(data)
    return files


def test_fetch_and_skip_when_complete(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    dest = tmp_path / "out" / "a.bin"
    assert fetch_url(http_replica.url("data/a.bin"), dest, **FAST) == dest
    assert dest.read_bytes() == served["data/a.bin"]
    assert not dest.with_name("a.bin.partial").exists()
    fetch_url(http_replica.url("data/a.bin"), dest, expected_size=300_000,
              sha256=hashlib.sha256(served["data/a.bin"]).hexdigest(), **FAST)
    assert http_replica.hits["data/a.bin"] == 1  # complete and matching: not fetched again


def test_5xx_twice_then_ok(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/b.bin", "status", times=2, status=503)
    dest = fetch_url(http_replica.url("data/b.bin"), tmp_path / "b.bin", **FAST)
    assert dest.read_bytes() == served["data/b.bin"]
    assert http_replica.hits["data/b.bin"] == 3


def test_429_honours_retry_after(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/c.bin", "status", status=429, retry_after="1")
    started = time.monotonic()
    fetch_url(http_replica.url("data/c.bin"), tmp_path / "c.bin", **FAST)
    assert time.monotonic() - started >= 1.0  # waited as asked, not the 0.01 s backoff
    assert (tmp_path / "c.bin").read_bytes() == served["data/c.bin"]
    assert http_replica.hits["data/c.bin"] == 2


def test_connection_drop_resumes_with_range(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/a.bin", "drop", fraction=0.5)
    dest = fetch_url(http_replica.url("data/a.bin"), tmp_path / "a.bin", **FAST)
    assert dest.read_bytes() == served["data/a.bin"]
    assert http_replica.hits["data/a.bin"] == 2
    (range_header,) = http_replica.ranges["data/a.bin"]
    assert range_header.startswith("bytes=") and int(range_header[6:].rstrip("-")) > 0


def test_truncated_body_is_retried(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/b.bin", "truncate", fraction=0.3)  # Content-Length says more than is sent
    dest = fetch_url(http_replica.url("data/b.bin"), tmp_path / "b.bin", **FAST)
    assert dest.read_bytes() == served["data/b.bin"]
    assert http_replica.hits["data/b.bin"] == 2


def test_server_ignoring_range_gets_full_download(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/a.bin", "drop", fraction=0.4)
    http_replica.add_fault("data/a.bin", "ignore_range")
    dest = fetch_url(http_replica.url("data/a.bin"), tmp_path / "a.bin", **FAST)
    assert dest.read_bytes() == served["data/a.bin"]  # not the first 40% twice


def test_persistent_5xx_names_url_and_attempts(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    http_replica.add_fault("data/c.bin", "status", times=100, status=500)
    url = http_replica.url("data/c.bin")
    with pytest.raises(FetchError, match="HTTP 500") as caught:
        fetch_url(url, tmp_path / "c.bin", retries=2, **FAST)
    assert caught.value.source == url and url in str(caught.value) and "3 attempts" in str(caught.value)
    assert http_replica.hits["data/c.bin"] == 3
    assert not (tmp_path / "c.bin").exists()


def test_404_is_not_retried(http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_url(http_replica.url("data/none.bin"), tmp_path / "none.bin", **FAST)
    assert http_replica.hits["data/none.bin"] == 1


def test_checksum_and_size_verification(http_replica: ReplicaHTTPServer, served: dict[str, bytes], tmp_path: Path) -> None:
    url = http_replica.url("data/b.bin")
    with pytest.raises(FetchError, match="sha256"):
        fetch_url(url, tmp_path / "b.bin", sha256="0" * 64, retries=1, **FAST)
    assert not (tmp_path / "b.bin").exists()
    stale = tmp_path / "stale.bin"
    stale.write_bytes(b"old version")
    fetch_url(url, stale, md5=hashlib.md5(served["data/b.bin"]).hexdigest(), **FAST)
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


def test_fetch_s3_unsigned_resume_and_errors(moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # the code under test reads anonymously
    bucket = f"sdl-{uuid.uuid4().hex[:10]}"
    moto_s3.create_bucket(bucket)
    data = _blob(120_000, 7)
    moto_s3.put(bucket, "train/x.jpg", data)
    dest = tmp_path / "x.jpg"
    dest.with_name("x.jpg.partial").write_bytes(data[:50_000])  # an interrupted earlier run
    fetch_s3(bucket, "train/x.jpg", dest, endpoint_url=moto_s3.endpoint_url, **FAST)
    assert dest.read_bytes() == data
    mtime = dest.stat().st_mtime_ns
    fetch_s3(bucket, "train/x.jpg", dest, endpoint_url=moto_s3.endpoint_url, check_remote_size=True, **FAST)
    assert dest.stat().st_mtime_ns == mtime  # complete: skipped
    full = tmp_path / "full.jpg"
    full.with_name("full.jpg.partial").write_bytes(data)  # every byte already there (416 on resume)
    fetch_s3(bucket, "train/x.jpg", full, endpoint_url=moto_s3.endpoint_url, **FAST)
    assert full.read_bytes() == data
    with pytest.raises(FetchError, match=f"s3://{bucket}/train/nope.jpg.*NoSuchKey"):
        fetch_s3(bucket, "train/nope.jpg", tmp_path / "nope.jpg", endpoint_url=moto_s3.endpoint_url, **FAST)


# --------------------------------------------------------------------------- archives


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in entries:
            payload = (data or {}).get(info.name)
            if payload is not None:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    return path


def test_safe_extract_zip_and_members(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"annotations/a.json": b"{}", "annotations/b.json": b"[]", "x/y.txt": b"y"})
    written = safe_extract(archive, tmp_path / "out", members=["annotations/a.json"])
    assert written == [tmp_path / "out" / "annotations" / "a.json"]
    assert not (tmp_path / "out" / "x").exists()
    assert len(safe_extract(archive, tmp_path / "out")) == 3


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "..\\evil.txt", "/abs/evil.txt", "C:/evil.txt"])
def test_safe_extract_refuses_escaping_zip_entries(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_refuses_links_outside(tmp_path: Path) -> None:
    link = tarfile.TarInfo("data/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    with pytest.raises(UnsafeArchiveError, match="data/passwd"):
        safe_extract(_tar(tmp_path / "sym.tgz", [link]), tmp_path / "out")
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/shadow"
    with pytest.raises(UnsafeArchiveError, match="hard"):
        safe_extract(_tar(tmp_path / "hard.tgz", [hard]), tmp_path / "out")
    absolute = tarfile.TarInfo("/tmp/evil")
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        safe_extract(_tar(tmp_path / "abs.tgz", [absolute], {"/tmp/evil": b"x"}), tmp_path / "out")


def test_safe_extract_tar_with_inside_link(tmp_path: Path) -> None:
    file = tarfile.TarInfo("pkg/data.txt")
    link = tarfile.TarInfo("pkg/alias.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "data.txt"
    safe_extract(_tar(tmp_path / "ok.tgz", [file, link], {"pkg/data.txt": b"hello"}), tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "alias.txt").read_bytes() == b"hello"
    assert os.path.islink(tmp_path / "out" / "pkg" / "alias.txt")


def test_pickles_refused_unless_plain_data() -> None:
    class Exploit:
        def __reduce__(self):  # what a hostile pickle does: call os.system on load
            return (os.system, ("echo pwned",))

    with pytest.raises(UnsafePickleError, match="system"):
        safe_loads(pickle.dumps(Exploit()))
    assert safe_loads(pickle.dumps({"train": {0, 1}, "test": [2]}, protocol=2)) == {"train": {0, 1}, "test": [2]}


def test_sample_evenly() -> None:
    assert sample_evenly(list(range(10)), None) == list(range(10))
    picked = sample_evenly(list(range(10)), 3)
    assert len(picked) == 3 and picked[0] == 0 and picked[-1] == 9
    assert len(set(sample_evenly(list(range(100)), 7))) == 7
