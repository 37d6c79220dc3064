"""The open_images kind acquired end to end: CSVs from the HTTP replica (or a local folder),
images from a moto S3 replica read anonymously."""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sdl.data.download import acquire
from sdl.data.kinds.open_images import (
    REPORT_NAME,
    read_top_unseen,
    read_unseen_candidates,
)
from sdl.data.manifest import read_manifest, write_manifest
from sdl.safety.safe_pickle import UnsafePickleError
from tests.helpers.replicas import (
    MotoS3,
    OpenImagesReplica,
    ReplicaHTTPServer,
    write_open_images_replica,
)


@pytest.fixture
def anonymous(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def replica(http_root: Path, moto_s3: MotoS3) -> tuple[OpenImagesReplica, str]:
    data = write_open_images_replica(http_root / "oi")
    bucket = f"open-images-{uuid.uuid4().hex[:8]}"
    moto_s3.create_bucket(bucket)
    for key, blob in data.images.items():
        moto_s3.put(bucket, key, blob)
    return data, bucket


def _options(base: str, bucket: str, moto: MotoS3, **extra: object) -> dict[str, object]:
    return {"base_url": base, "unseen_labels": "unseen_labels.pkl", "top_unseen": "top_400_unseen.csv",
            "bucket": bucket, "endpoint_url": moto.endpoint_url, "subsets": ["train", "validation", "test"],
            "workers": 4, "retries": 2, "backoff": 0.01, "timeout": 5.0, **extra}


def test_acquire_end_to_end_and_resume(replica: tuple[OpenImagesReplica, str], http_replica: ReplicaHTTPServer,
                                       moto_s3: MotoS3, anonymous: None, tmp_path: Path) -> None:
    data, bucket = replica
    raw = tmp_path / "raw"
    acquired = acquire("open_images", _options(http_replica.url("oi"), bucket, moto_s3), raw)

    tags = acquired.tags
    assert tags["tag"].is_unique and len(tags) == len(data.seen) + len(data.unseen)
    assert (tags["role"] == "seen").sum() == len(data.seen) and (tags["role"] == "unseen").sum() == len(data.unseen)
    crane_a, crane_b = data.seen[2], data.seen[3]
    assert {"Crane", f"Crane ({crane_b})", "Ducks, geese and swans"} <= set(tags["tag"])
    unseen_tags = set(tags.loc[tags["role"] == "unseen", "tag"])
    assert unseen_tags == {data.names[m] for m in data.unseen}  # the BOM/CRLF indices picked these

    tag_of = {crane_a: "Crane", crane_b: f"Crane ({crane_b})"}
    tag_of.update({m: data.names[m] for m in data.seen + data.unseen if m not in tag_of})
    manifest = acquired.manifest.set_index("image_id")
    # train/validation: the images with a tag; test: every labelled image (LESA's test set)
    expected = {i for i, pos in data.positives.items() if pos or data.subset[i] == "test"}
    untagged_test = {i for i, pos in data.positives.items() if not pos and data.subset[i] == "test"}
    assert set(manifest.index) == expected and len(untagged_test) == 1
    assert acquired.report["test_without_tags"] == 1
    for image_id in expected:
        assert manifest.loc[image_id, "tags"] == sorted(tag_of[m] for m in data.positives[image_id])
        # Confidence 0: a verified negative, kept apart from the tags
        assert manifest.loc[image_id, "negatives"] == sorted(tag_of[m] for m in data.negatives[image_id])
        assert not set(manifest.loc[image_id, "negatives"]) & set(manifest.loc[image_id, "tags"])
        split = {"train": "train", "validation": None, "test": "test"}[data.subset[image_id]]
        value = manifest.loc[image_id, "official_split"]
        assert value == split if split else pd.isna(value)  # validation: no official role
        assert (raw / manifest.loc[image_id, "path"]).is_file()
    assert acquired.report["failed"] == 0 and acquired.report["renamed_duplicate_names"] == 1
    assert (raw / "classes.csv").is_file()
    write_manifest(tmp_path / "manifest.parquet", acquired.manifest)
    back = read_manifest(tmp_path / "manifest.parquet")
    assert back["official_split"].isna().sum() == sum(1 for i in expected if data.subset[i] == "validation")
    assert back.set_index("image_id")["negatives"].to_dict() == manifest["negatives"].to_dict()
    assert acquired.report["verified_negatives"] == sum(len(data.negatives[i]) for i in expected)

    stamps = {p: p.stat().st_mtime_ns for p in (raw / "images").rglob("*.jpg")}
    (raw / REPORT_NAME).unlink()
    again = acquire("open_images", _options(http_replica.url("oi"), bucket, moto_s3), raw)
    assert again.report["fetched"] == 0 and again.report["skipped"] == len(expected)
    assert {p: p.stat().st_mtime_ns for p in (raw / "images").rglob("*.jpg")} == stamps  # nothing fetched twice


def test_missing_object_counted_local_lists(replica: tuple[OpenImagesReplica, str], moto_s3: MotoS3,
                                           anonymous: None, tmp_path: Path) -> None:
    data, bucket = replica
    victim = sorted(k for k in data.images if k.startswith("test/") and data.positives[k[5:-4]])[0]
    moto_s3.client.delete_object(Bucket=bucket, Key=victim)
    acquired = acquire("open_images", _options(str(data.root), bucket, moto_s3, subsets=["test"]), tmp_path / "raw")
    labelled = sum(1 for i in data.positives if data.subset[i] == "test")  # every test image has a label row
    assert acquired.report["missing"] == 1 and len(acquired.manifest) == labelled - 1
    (failure,) = acquired.report["failures_sample"]
    assert failure[0] == victim and "NoSuchKey" in failure[1]
    small = acquire("open_images", _options(str(data.root), bucket, moto_s3, subsets=["train"], max_images=4),
                    tmp_path / "small")
    assert small.report["subsets"]["train"]["chosen"] == 4 and len(small.manifest) == 4


def test_unseen_list_forms_and_hostile_pickle(replica: tuple[OpenImagesReplica, str], moto_s3: MotoS3,
                                              anonymous: None, tmp_path: Path) -> None:
    data, bucket = replica
    candidates = read_unseen_candidates(data.root / "unseen_labels.pkl")
    np.save(tmp_path / "unseen.npy", np.array(candidates))  # str dtype: no pickle needed
    assert read_unseen_candidates(tmp_path / "unseen.npy") == candidates
    (tmp_path / "unseen.txt").write_text("\n".join(candidates) + "\n")
    assert read_unseen_candidates(tmp_path / "unseen.txt") == candidates
    (tmp_path / "top.csv").write_bytes(b"\xef\xbb\xbf3\r\n0\r\n")
    assert read_top_unseen(tmp_path / "top.csv", 4) == [3, 0]
    with pytest.raises(ValueError, match="outside"):
        read_top_unseen(tmp_path / "top.csv", 3)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(UnsafePickleError, match="system"):
        acquire("open_images", _options(str(data.root), bucket, moto_s3, unseen_labels=str(hostile)), tmp_path / "raw")
