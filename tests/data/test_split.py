"""Tests of the seen/unseen tag split and the train/val/test image split (sdl.data.split)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sdl.data.split import (
    IMAGES_FILE,
    TAGS_FILE,
    ImageSplitSpec,
    TagSplit,
    TagSplitSpec,
    read_split,
    split_images,
    split_tags,
    write_split,
)

VOCAB = ["bear", "bird", "cat", "cow", "dog", "horse", "sheep", "zebra"]


def _manifest(n: int, seed: int = 0, official: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tags = [sorted(rng.choice(VOCAB, size=int(rng.integers(1, 4)), replace=False).tolist()) for _ in range(n)]
    frame = pd.DataFrame({"image_id": [f"img{i:04d}" for i in range(n)], "path": [f"{i}.png" for i in range(n)], "tags": tags})
    if official:
        frame["official_split"] = ["test" if i % 4 == 0 else "train" for i in range(n)]
    return frame


# --------------------------------------------------------------------------- tags


def test_listed_keeps_vocabulary_order():
    split = split_tags(VOCAB, TagSplitSpec(method="listed", unseen=["zebra", "cat"]))
    assert split.unseen == ["cat", "zebra"]
    assert split.seen == ["bear", "bird", "cow", "dog", "horse", "sheep"]
    assert split.all_tags == split.seen + split.unseen


def test_listed_unknown_unseen_tag():
    with pytest.raises(ValueError, match="unicorn"):
        split_tags(VOCAB, TagSplitSpec(method="listed", unseen=["cat", "unicorn"]))


@pytest.mark.parametrize("unseen", [[], VOCAB])
def test_empty_seen_or_unseen_set(unseen):
    with pytest.raises(ValueError, match="empty"):
        split_tags(VOCAB, TagSplitSpec(method="listed", unseen=list(unseen)))


def test_tag_split_overlap_and_duplicates():
    with pytest.raises(ValueError, match="cat"):
        TagSplit(seen=["cat", "dog"], unseen=["cat"])
    with pytest.raises(ValueError, match="duplicate"):
        TagSplit(seen=["dog", "dog"], unseen=["cat"])


def test_predefined_roles():
    roles = {"cat": "unseen", "dog": "seen", "cow": "seen", "zebra": "unseen"}
    split = split_tags(VOCAB, TagSplitSpec(method="predefined"), roles)
    assert split.seen == ["cow", "dog"]
    assert split.unseen == ["cat", "zebra"]
    with pytest.raises(ValueError, match="roles"):
        split_tags(VOCAB, TagSplitSpec(method="predefined"), None)
    with pytest.raises(ValueError, match="maybe"):
        split_tags(VOCAB, TagSplitSpec(method="predefined"), {**roles, "bear": "maybe"})


def test_random_split_is_seeded():
    spec = TagSplitSpec(method="random", num_unseen=3, seed=4)
    first = split_tags(VOCAB, spec)
    assert first == split_tags(VOCAB, spec)
    assert len(first.unseen) == 3 and len(first.seen) == len(VOCAB) - 3
    assert sorted(first.all_tags) == sorted(VOCAB)
    draws = {tuple(split_tags(VOCAB, TagSplitSpec(method="random", num_unseen=3, seed=s)).unseen) for s in range(10)}
    assert len(draws) > 1
    for bad in (0, len(VOCAB)):
        with pytest.raises(ValueError, match="num_unseen"):
            split_tags(VOCAB, TagSplitSpec(method="random", num_unseen=bad))


def test_unknown_method():
    with pytest.raises(ValueError, match="'kfold'"):
        split_tags(VOCAB, TagSplitSpec(method="kfold"))


# --------------------------------------------------------------------------- images

TAGS = TagSplit(seen=["bear", "bird", "cow", "dog", "horse", "sheep"], unseen=["cat", "zebra"])


def test_random_image_split_fractions():
    manifest = _manifest(200)
    result = split_images(manifest, TAGS, ImageSplitSpec(val_fraction=0.1, test_fraction=0.25, seed=1))
    assert list(result["image_id"]) == list(manifest["image_id"])  # every image, manifest order
    assert result["subset"].value_counts().to_dict() == {"train": 130, "test": 50, "val": 20}


def test_image_split_determinism():
    manifest = _manifest(100)
    a = split_images(manifest, TAGS, ImageSplitSpec(seed=3))
    b = split_images(manifest, TAGS, ImageSplitSpec(seed=3))
    c = split_images(manifest, TAGS, ImageSplitSpec(seed=4))
    assert a.equals(b)
    assert not a["subset"].equals(c["subset"])


def test_official_split_respected():
    manifest = _manifest(120, official=True)
    result = split_images(manifest, TAGS, ImageSplitSpec(val_fraction=0.2, test_fraction=0.5, seed=0))
    merged = result.merge(manifest[["image_id", "official_split"]], on="image_id")
    assert len(merged) == len(manifest)
    assert (merged.loc[merged["official_split"] == "test", "subset"] == "test").all()
    from_train = merged.loc[merged["official_split"] == "train", "subset"]
    assert set(from_train) == {"train", "val"}
    assert (from_train == "val").sum() == round(0.2 * 90)  # test_fraction plays no part
    assert (merged["subset"] == "test").sum() == 30


def test_train_seen_only_drops_training_images_with_unseen_tags():
    manifest = _manifest(150, seed=2)
    everything = split_images(manifest, TAGS, ImageSplitSpec(seed=5, train_seen_only=False))
    seen_only = split_images(manifest, TAGS, ImageSplitSpec(seed=5, train_seen_only=True))
    tags_of = dict(zip(manifest["image_id"], manifest["tags"], strict=True))
    expected = [
        (image_id, subset)
        for image_id, subset in zip(everything["image_id"], everything["subset"], strict=True)
        if not (subset == "train" and ({"cat", "zebra"} & set(tags_of[image_id])))
    ]
    assert list(zip(seen_only["image_id"], seen_only["subset"], strict=True)) == expected
    assert len(expected) < len(everything)  # some were dropped
    evaluated = seen_only[seen_only["subset"] != "train"]["image_id"]
    assert any({"cat", "zebra"} & set(tags_of[i]) for i in evaluated)  # unseen stay in val/test


def test_untagged_images_leave_train_and_val_but_stay_in_test():
    manifest = _manifest(60, official=True)  # every 4th image is an official test image
    for row, tags in ((3, []), (7, ["unicorn"]), (9, ["unicorn", "cat"]), (4, []), (8, ["unicorn"])):
        manifest.at[row, "tags"] = tags
    result = split_images(manifest, TAGS, ImageSplitSpec(val_fraction=0.2, seed=0))
    subset = dict(zip(result["image_id"], result["subset"], strict=True))
    assert "img0003" not in subset and "img0007" not in subset  # train images with nothing to learn
    assert subset["img0009"] in ("train", "val")
    # official test images stay whatever their tags: protocol "all" evaluates them (LESA, BiAM)
    assert subset["img0004"] == "test" and subset["img0008"] == "test"
    assert len(result) == 58 and (result["subset"] == "test").sum() == 15
    assert not {"zsl", "gzsl"} & set(result.columns)  # no per-setting test sets in this manifest


def test_test_settings_give_each_setting_its_own_test_images(tmp_path):
    manifest = _manifest(40, official=True)
    settings = {0: ["gzsl"], 4: ["zsl"], 8: ["gzsl", "zsl"], 12: None}  # rows 0, 4, ... are test images
    manifest["test_settings"] = [settings.get(i, ["gzsl", "zsl"]) if i % 4 == 0 else None for i in range(40)]
    result = split_images(manifest, TAGS, ImageSplitSpec(val_fraction=0.1, seed=0))
    test = result[result["subset"] == "test"].set_index("image_id")
    assert test.loc["img0000", ["zsl", "gzsl"]].tolist() == [False, True]
    assert test.loc["img0004", ["zsl", "gzsl"]].tolist() == [True, False]
    assert test.loc["img0008", ["zsl", "gzsl"]].tolist() == [True, True]
    assert test.loc["img0012", ["zsl", "gzsl"]].tolist() == [True, True]  # null: every setting
    assert result.loc[result["subset"] != "test", ["zsl", "gzsl"]].all().all()
    write_split(tmp_path, TAGS, result)
    _, back = read_split(tmp_path)
    pd.testing.assert_frame_equal(back, result)
    counts = json.loads((tmp_path / TAGS_FILE).read_text())["images"]
    assert counts["test_zsl"] == 9 and counts["test_gzsl"] == 9 and counts["test"] == 10
    manifest["test_settings"] = [["gzsl"] if i % 4 == 0 else None for i in range(40)]
    with pytest.raises(ValueError, match="ZSL test set is empty"):
        split_images(manifest, TAGS, ImageSplitSpec(val_fraction=0.1, seed=0))


def test_empty_subset_is_an_error():
    with pytest.raises(ValueError, match="test split is empty"):
        split_images(_manifest(4), TAGS, ImageSplitSpec(val_fraction=0.0, test_fraction=0.1))
    result = split_images(_manifest(10), TAGS, ImageSplitSpec(val_fraction=0.0, test_fraction=0.3))
    assert set(result["subset"]) == {"train", "test"}  # no val is allowed when asked for none


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.1, 1.0), (0.5, 0.5)])
def test_bad_fractions(val, test):
    with pytest.raises(ValueError, match="fraction"):
        ImageSplitSpec(val_fraction=val, test_fraction=test)


def test_write_read_round_trip(tmp_path):
    manifest = _manifest(50)
    images = split_images(manifest, TAGS, ImageSplitSpec(seed=1))
    write_split(tmp_path, TAGS, images)
    tags, back = read_split(tmp_path)
    assert tags == TAGS
    pd.testing.assert_frame_equal(back, images)
    counts = json.loads((tmp_path / TAGS_FILE).read_text())["images"]
    assert counts == {s: int((images["subset"] == s).sum()) for s in ("train", "val", "test")}
    assert (tmp_path / IMAGES_FILE).is_file()
