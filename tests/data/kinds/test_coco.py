"""The coco kind acquired end to end from a local replica of the official annotation archive
and images (per-image URLs and the train/val zips)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdl.data.download import acquire
from sdl.data.kinds.coco import (
    COCO_CATEGORIES,
    COCO_SEEN,
    COCO_UNSEEN,
    COCO_UNUSED,
    REPORT_NAME,
)
from tests.helpers.replicas import CocoReplica, ReplicaHTTPServer, write_coco_replica


@pytest.fixture
def replica(http_root: Path, http_replica: ReplicaHTTPServer) -> CocoReplica:
    return write_coco_replica(http_root, http_replica.base_url)


def _options(server: ReplicaHTTPServer, **extra: object) -> dict[str, object]:
    return {"annotations": server.url("annotations_trainval2014.zip"), "workers": 4, "retries": 2,
            "backoff": 0.01, "timeout": 5.0, **extra}


def _expected(replica: CocoReplica, test_rule: str = "any") -> dict[str, tuple[str, list[str]]]:
    seen, unseen = set(COCO_SEEN), set(COCO_UNSEEN)
    out = {}
    for stem, names in replica.labels.items():
        if replica.subset[stem] == "train2014":
            keep = bool(names & seen) and not names & unseen
            split = "train"
        else:
            keep = bool(names & unseen) if test_rule == "unseen" else bool(names & (seen | unseen))
            split = "test"
        if keep:
            out[stem] = (split, sorted(names & (seen | unseen)))
    return out


def test_split_lists() -> None:
    assert len(COCO_CATEGORIES) == 80 and len(COCO_SEEN) == 48 and len(COCO_UNSEEN) == 17 and len(COCO_UNUSED) == 15
    assert not set(COCO_SEEN) & set(COCO_UNSEEN)
    assert {"traffic light", "hot dog", "teddy bear", "hair drier"} <= set(COCO_UNUSED)


def test_acquire_end_to_end_and_rerun(replica: CocoReplica, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    acquired = acquire("coco", _options(http_replica), raw)
    tags = acquired.tags
    assert list(tags.loc[tags["role"] == "unseen", "tag"]) == list(COCO_UNSEEN)
    assert list(tags.loc[tags["role"] == "seen", "tag"]) == list(COCO_SEEN)
    assert not set(COCO_UNUSED) & set(tags["tag"])  # the 15 other classes are dropped

    expected = _expected(replica)
    manifest = acquired.manifest.set_index("image_id")
    assert set(manifest.index) == set(expected)
    for stem, (split, names) in expected.items():
        assert manifest.loc[stem, "official_split"] == split
        assert manifest.loc[stem, "tags"] == names
        assert (raw / manifest.loc[stem, "path"]).is_file()
    train_tags = {t for tags_ in manifest.loc[manifest["official_split"] == "train", "tags"] for t in tags_}
    assert train_tags and not train_tags & set(COCO_UNSEEN)  # training never shows an unseen class
    test_tags = {t for tags_ in manifest.loc[manifest["official_split"] == "test", "tags"] for t in tags_}
    assert test_tags & set(COCO_UNSEEN) and test_tags & set(COCO_SEEN)
    assert acquired.report["missing"] == 0 and acquired.report["train"] + acquired.report["test"] == len(expected)

    hits = {p: n for p, n in http_replica.hits.items() if p.endswith(".jpg")}
    (raw / REPORT_NAME).unlink()
    again = acquire("coco", _options(http_replica), raw)
    assert {p: n for p, n in http_replica.hits.items() if p.endswith(".jpg")} == hits
    assert http_replica.hits["annotations_trainval2014.zip"] == 1
    assert again.report["fetched"] == 0 and again.report["skipped"] == len(expected)


def test_dead_image_counted_and_test_rule_unseen(replica: CocoReplica, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    expected = _expected(replica, "unseen")
    victim = sorted(s for s, (split, _) in expected.items() if split == "test")[0]
    (http_replica.root / "val2014" / f"{victim}.jpg").unlink()
    acquired = acquire("coco", _options(http_replica, test_rule="unseen"), tmp_path / "raw")
    assert set(acquired.manifest["image_id"]) == set(expected) - {victim}
    assert acquired.report["missing"] == 1 and acquired.report["failed"] == 1
    assert all(set(t) & set(COCO_UNSEEN) for t in acquired.manifest.loc[acquired.manifest["official_split"] == "test", "tags"])


def test_images_from_archives_extract_only_chosen(replica: CocoReplica, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    options = _options(http_replica, images="archive", max_images=3, train_archive=http_replica.url("train2014.zip"),
                       val_archive=http_replica.url("val2014.zip"))
    acquired = acquire("coco", options, tmp_path / "raw")
    assert len(acquired.manifest) == 6 and acquired.report["missing"] == 0
    extracted = list((tmp_path / "raw" / "images").rglob("*.jpg"))
    assert len(extracted) == 6  # not the whole archive
    assert not any(p.endswith(".jpg") for p in http_replica.hits)  # no per-image requests
