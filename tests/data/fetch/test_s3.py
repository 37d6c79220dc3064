"""S3 downloads (sdl.data.fetch.s3) against a moto server: unsigned, resumed, clear errors."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sdl.data.fetch.errors import FetchError
from sdl.data.fetch.s3 import fetch_s3
from tests.helpers.replicas import FAST_RETRY, MotoS3, random_bytes


def test_fetch_s3_unsigned_resume_and_errors(moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # the code under test reads anonymously
    bucket = f"sdl-{uuid.uuid4().hex[:10]}"
    moto_s3.create_bucket(bucket)
    data = random_bytes(120_000, 7)
    moto_s3.put(bucket, "train/x.jpg", data)
    dest = tmp_path / "x.jpg"
    dest.with_name("x.jpg.partial").write_bytes(data[:50_000])  # an interrupted earlier run
    fetch_s3(bucket, "train/x.jpg", dest, endpoint_url=moto_s3.endpoint_url, **FAST_RETRY)
    assert dest.read_bytes() == data
    mtime = dest.stat().st_mtime_ns
    fetch_s3(bucket, "train/x.jpg", dest, endpoint_url=moto_s3.endpoint_url, check_remote_size=True, **FAST_RETRY)
    assert dest.stat().st_mtime_ns == mtime  # complete: skipped
    full = tmp_path / "full.jpg"
    full.with_name("full.jpg.partial").write_bytes(data)  # every byte already there (416 on resume)
    fetch_s3(bucket, "train/x.jpg", full, endpoint_url=moto_s3.endpoint_url, **FAST_RETRY)
    assert full.read_bytes() == data
    with pytest.raises(FetchError, match=f"s3://{bucket}/train/nope.jpg.*NoSuchKey"):
        fetch_s3(bucket, "train/nope.jpg", tmp_path / "nope.jpg", endpoint_url=moto_s3.endpoint_url, **FAST_RETRY)
