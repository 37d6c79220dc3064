"""The nus_wide kind acquired end to end from a local replica of the official lists and of
Flickr (dead URLs included)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from sdl.config.typed import ParamsError
from sdl.data.download import acquire
from sdl.data.kinds.nus_wide import REPORT_NAME, image_key, read_binary_rows
from sdl.data.manifest import read_manifest, write_manifest
from tests.helpers.replicas import (
    NUS_CONCEPTS,
    NusReplica,
    ReplicaHTTPServer,
    write_nus_wide_replica,
)


@pytest.fixture
def replica(http_root: Path, http_replica: ReplicaHTTPServer) -> NusReplica:
    return write_nus_wide_replica(http_root, http_replica.base_url)


def _options(http_replica: ReplicaHTTPServer, **extra: object) -> dict[str, object]:
    return {"lists": http_replica.url("lists"), "workers": 4, "retries": 2, "backoff": 0.01, "timeout": 5.0, **extra}


def _image_hits(server: ReplicaHTTPServer) -> dict[str, int]:
    return {path: n for path, n in server.hits.items() if path.startswith("flickr/")}


def test_acquire_end_to_end(replica: NusReplica, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    acquired = acquire("nus_wide", _options(http_replica), raw)

    tags = acquired.tags
    assert len(tags) == 1006 and tags["tag"].is_unique
    assert list(tags.loc[tags["role"] == "unseen", "tag"]) == list(NUS_CONCEPTS)
    assert list(tags.loc[tags["role"] == "seen", "tag"]) == replica.seen  # the 1,000 tags minus the 75 concepts
    assert len(replica.seen) == 925 and "sky" in replica.tag_list and "sky" not in replica.seen

    manifest = acquired.manifest.set_index("image_id")
    expected = [k for k in replica.keys if k not in replica.untagged | replica.dead | replica.null_url]
    assert len(manifest) == len(expected) == 25
    for key in expected:
        row = manifest.loc[key.rsplit(".", 1)[0].replace("/", "_")]
        assert row["path"] == f"images/{key}" and (raw / row["path"]).is_file()
        assert sorted(row["tags"]) == sorted(replica.tags[key])
        assert row["official_split"] == replica.splits[key]
    first = manifest.loc[replica.keys[0].rsplit(".", 1)[0].replace("/", "_"), "tags"]
    assert "beach" in first and "sky" not in first  # concepts from AllLabels, not from Flickr tags

    report = acquired.report
    assert report["missing"] == 4 and report["failed"] == 3 and report["no_url"] == 1
    assert report["untagged_dropped"] == 1 and report["images"] == 25
    assert (raw / REPORT_NAME).is_file()
    write_manifest(tmp_path / "manifest.parquet", acquired.manifest)  # the stage's schema accepts it
    assert len(read_manifest(tmp_path / "manifest.parquet")) == 25


def test_untagged_test_images_are_kept_for_protocol_all(http_root: Path, http_replica: ReplicaHTTPServer,
                                                        tmp_path: Path) -> None:
    replica = write_nus_wide_replica(http_root, http_replica.base_url, untagged_test=True)
    (train_key,) = [k for k in replica.untagged if replica.splits[k] == "train"]
    (test_key,) = [k for k in replica.untagged if replica.splits[k] == "test"]
    ids = {k: k.rsplit(".", 1)[0].replace("/", "_") for k in replica.untagged}
    default = acquire("nus_wide", _options(http_replica), tmp_path / "raw")  # drop_untagged: train
    manifest = default.manifest.set_index("image_id")
    assert ids[test_key] in manifest.index and manifest.loc[ids[test_key], "tags"] == []
    assert ids[train_key] not in manifest.index  # nothing to learn from: still left out
    assert default.report["untagged_dropped"] == 1 and default.report["untagged_test_kept"] == 1
    strict = acquire("nus_wide", _options(http_replica, drop_untagged=True), tmp_path / "raw")
    assert not set(ids.values()) & set(strict.manifest["image_id"]) and strict.report["untagged_dropped"] == 2
    everything = acquire("nus_wide", _options(http_replica, drop_untagged=False), tmp_path / "raw")
    assert set(ids.values()) <= set(everything.manifest["image_id"])
    with pytest.raises(ParamsError, match="drop_untagged"):
        acquire("nus_wide", _options(http_replica, drop_untagged="test"), tmp_path / "raw")


def test_rerun_fetches_no_finished_file_twice(replica: NusReplica, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    http_replica.add_fault(f"flickr/{replica.keys[1]}", "status", times=2, status=503)
    http_replica.add_fault(f"flickr/{replica.keys[2]}", "drop", fraction=0.5)
    first = acquire("nus_wide", _options(http_replica), raw)
    assert first.report["images"] == 25
    hits = _image_hits(http_replica)
    list_hits = sum(n for p, n in http_replica.hits.items() if p.startswith("lists/"))
    (raw / REPORT_NAME).unlink()
    second = acquire("nus_wide", _options(http_replica), raw)
    assert second.report["skipped"] == 25 and second.report["fetched"] == 0
    after = _image_hits(http_replica)
    for key in first.manifest["path"]:
        path = "flickr/" + key.removeprefix("images/")
        assert after[path] == hits[path], path  # finished: not fetched again
    assert sum(n for p, n in http_replica.hits.items() if p.startswith("lists/")) == list_hits
    assert second.manifest.equals(first.manifest)


def test_image_dir_fills_dead_urls_and_max_images(replica: NusReplica, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    local = tmp_path / "already"
    for key in replica.dead:  # downloaded long ago, before the photos were deleted
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(replica.images_dir / replica.keys[0], local / key)
    acquired = acquire("nus_wide", _options(http_replica, image_dir=str(local)), tmp_path / "raw")
    assert acquired.report["local"] == 3 and acquired.report["missing"] == 1  # only the "null" URL
    small = acquire("nus_wide", _options(http_replica, max_images=7), tmp_path / "small")
    assert small.report["chosen"] == 7
    assert set(small.manifest["official_split"]) <= {"train", "test"}


def test_local_lists_from_official_archives(replica: NusReplica, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    archives = tmp_path / "official"
    archives.mkdir()
    groups = {"ConceptsList.zip": ["Concepts81.txt"], "NUS_WID_Tags.zip": ["NUS_WID_Tags"],
              "Groundtruth.zip": ["AllLabels"], "ImageList.zip": ["ImageList"]}
    for archive, parts in groups.items():
        with zipfile.ZipFile(archives / archive, "w") as zf:
            for part in parts:
                source = replica.lists_dir / part
                for file in [source] if source.is_file() else sorted(source.rglob("*")):
                    zf.write(file, str(file.relative_to(replica.lists_dir)))
    shutil.copy(replica.lists_dir / "NUS-WIDE-urls.txt", archives / "NUS-WIDE-urls.txt")
    acquired = acquire("nus_wide", {"lists": str(archives), "archives": list(groups), "workers": 4, "retries": 1, "backoff": 0.01},
                       tmp_path / "raw")
    assert acquired.report["images"] == 25


def test_parsers_and_options(tmp_path: Path) -> None:
    assert image_key("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert image_key("actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    matrix = tmp_path / "m.txt"
    matrix.write_bytes(b"0\t1\t0\t\r\n1 0 1\r\n")
    rows, cols = read_binary_rows(matrix, 2, 3)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0), (1, 2)]
    matrix.write_bytes(b"0\t1\r\n1 0 1\r\n")
    with pytest.raises(ValueError, match="line 1 has 2 values"):
        read_binary_rows(matrix, 2, 3)
    with pytest.raises(ParamsError, match="url_size"):
        acquire("nus_wide", {"lists": str(tmp_path), "url_size": "huge"}, tmp_path / "raw")
