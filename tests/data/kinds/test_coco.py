"""The coco kind acquired end to end from a local replica of the official annotation archive
and images (per-image URLs and the train/val zips)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sdl.config.params import ImageSplitSpec
from sdl.data.download import acquire
from sdl.data.kinds.coco import (
    COCO_CATEGORIES,
    COCO_SEEN,
    COCO_UNSEEN,
    COCO_UNUSED,
    REPORT_NAME,
    keeps,
)
from sdl.data.manifest import read_manifest, write_manifest
from sdl.data.split import TagSplit, split_images
from tests.helpers.replicas import CocoReplica, ReplicaHTTPServer, write_coco_replica, write_coco_split_lists


@pytest.fixture
def replica(http_root: Path, http_replica: ReplicaHTTPServer) -> CocoReplica:
    return write_coco_replica(http_root, http_replica.base_url)


def _options(server: ReplicaHTTPServer, **extra: object) -> dict[str, object]:
    return {"annotations": server.url("annotations_trainval2014.zip"), "workers": 4, "retries": 2,
            "backoff": 0.01, "timeout": 5.0, **extra}


def _expected(replica: CocoReplica, test_rule: str = "seen_and_unseen") -> dict[str, tuple[str, list[str]]]:
    """The rules written out: train = seen, no unseen; test = per rule (the paper's default:
    a seen *and* an unseen object)."""
    seen, unseen = set(COCO_SEEN), set(COCO_UNSEEN)
    out = {}
    for stem, names in replica.labels.items():
        has_seen, has_unseen = bool(names & seen), bool(names & unseen)
        if replica.subset[stem] == "train2014":
            keep = has_seen and not has_unseen
            split = "train"
        else:
            keep = {"seen_and_unseen": has_seen and has_unseen, "unseen": has_unseen,
                    "any": has_seen or has_unseen}[test_rule]
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


def test_each_rule_on_every_case_of_the_hand_made_annotations(
    replica: CocoReplica, http_replica: ReplicaHTTPServer, tmp_path: Path,
) -> None:
    # The replica's val2014 holds each case: seen only, seen+unseen, unseen only, unused only,
    # none, seen+unused, seen+unseen+unused. Which ones each rule keeps, by hand:
    cases = {"seen only": ({"person"}, (False, True, False)), "seen+unseen": ({"car", "cat"}, (True, True, True)),
             "unseen only": ({"cup"}, (False, True, True)), "unused only": ({"hot dog"}, (False, False, False)),
             "none": (set(), (False, False, False)), "seen+unused": ({"book", "teddy bear"}, (False, True, False)),
             "seen+unseen+unused": ({"pizza", "sink", "traffic light"}, (True, True, True))}
    for names, (paper, any_, unseen) in cases.values():
        assert (keeps(names, "val2014", "seen_and_unseen"), keeps(names, "val2014", "any"),
                keeps(names, "val2014", "unseen")) == (paper, any_, unseen)
    assert keeps({"person", "hot dog"}, "train2014") and not keeps({"person", "cat"}, "train2014")
    assert not keeps({"hot dog"}, "train2014")
    val = {s: n for s, n in replica.labels.items() if replica.subset[s] == "val2014"}
    groups = (set(COCO_SEEN), set(COCO_UNSEEN), set(COCO_UNUSED))
    assert len({tuple(bool(n & g) for g in groups) for n in val.values()}) == 7  # every case is in the file

    acquired = acquire("coco", _options(http_replica), tmp_path / "raw")
    report = acquired.report
    assert report["selection"] == "test_rule=seen_and_unseen"
    for rule in ("seen_and_unseen", "any", "unseen"):
        assert report[f"rule_val2014_{rule}"] == sum(1 for split, _ in _expected(replica, rule).values() if split == "test")
    train = [s for s, n in replica.labels.items() if replica.subset[s] == "train2014"]
    assert report["rule_train2014_seen_no_unseen"] == sum(keeps(replica.labels[s], "train2014") for s in train)
    assert report["rule_train2014_seen_only_strict"] == sum(
        keeps(replica.labels[s], "train2014") and not replica.labels[s] & set(COCO_UNUSED) for s in train)
    assert report["paper_train"] == 73774 and report["paper_test"] == 6608
    assert report["rule_val2014_seen_and_unseen"] < report["rule_val2014_unseen"] < report["rule_val2014_any"]
    assert "test_settings" not in acquired.manifest  # one test set for both settings


def test_released_split_lists_give_zsl_and_gzsl_their_own_images(
    replica: CocoReplica, http_replica: ReplicaHTTPServer, tmp_path: Path,
) -> None:
    lists = write_coco_split_lists(replica, http_replica.root / "zs_split")
    acquired = acquire("coco", _options(http_replica, split_lists=http_replica.url("zs_split")), tmp_path / "raw")
    manifest = acquired.manifest.set_index("image_id")
    vocabulary = set(COCO_SEEN) | set(COCO_UNSEEN)
    test = set(lists.gzsl) | set(lists.zsl)
    assert set(manifest.index) == set(lists.train) | test
    assert test != {s for s, (split, _) in _expected(replica, "any").items() if split == "test"}  # the lists, no rule
    for stem in manifest.index:
        row = manifest.loc[stem]
        if stem in lists.train:
            assert row["official_split"] == "train" and row["test_settings"] is None
            assert row["tags"] == sorted(lists.train[stem])  # the list's annotations
        else:
            assert row["official_split"] == "test"
            assert row["tags"] == sorted((lists.gzsl.get(stem, set()) | lists.zsl.get(stem, set())) & vocabulary)
            assert row["test_settings"] == sorted(s for s, group in (("gzsl", lists.gzsl), ("zsl", lists.zsl))
                                                  if stem in group)
    report = acquired.report
    assert report["selection"] == "split_lists"
    assert (report["train_list"], report["gzsl_list"], report["zsl_list"]) == (len(lists.train), len(lists.gzsl), len(lists.zsl))
    assert (report["test_zsl"], report["test_gzsl"]) == (len(lists.zsl), len(lists.gzsl))
    assert 0 < len(lists.zsl) < len(lists.gzsl)

    # through the manifest and the split: each setting's test set, from the lists
    write_manifest(tmp_path / "manifest.parquet", acquired.manifest)
    back = read_manifest(tmp_path / "manifest.parquet")
    split = split_images(back, TagSplit(list(COCO_SEEN), list(COCO_UNSEEN)),
                         ImageSplitSpec(val_fraction=0.0, test_fraction=0.0, train_seen_only=True))
    test_rows = split[split["subset"] == "test"].set_index("image_id")
    assert set(test_rows.index[test_rows["zsl"]]) == set(lists.zsl)
    assert set(test_rows.index[test_rows["gzsl"]]) == set(lists.gzsl)

    # a list naming an image COCO 2014 does not have is refused, naming the file
    bad = http_replica.root / "bad"
    shutil.copytree(lists.folder, bad)
    document = json.loads((bad / "val_unseen.json").read_text())
    document["annotations"].append({**document["annotations"][0], "image_id": 123456789, "id": 10**9})
    (bad / "val_unseen.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="val_unseen.json.*neither"):
        acquire("coco", _options(http_replica, split_lists=str(bad)), tmp_path / "bad_raw")


def test_split_lists_without_a_zsl_list_score_both_settings_on_one_set(
    replica: CocoReplica, http_replica: ReplicaHTTPServer, tmp_path: Path,
) -> None:
    lists = write_coco_split_lists(replica, tmp_path / "zs_split")
    acquired = acquire("coco", _options(http_replica, split_lists=str(lists.folder), zsl_list=None), tmp_path / "raw")
    assert "test_settings" not in acquired.manifest
    assert set(acquired.manifest.loc[acquired.manifest["official_split"] == "test", "image_id"]) == set(lists.gzsl)


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
