"""Tests of the manifest format (sdl.data.manifest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sdl.data.manifest import (
    has_negatives,
    multi_hot,
    read_manifest,
    resolve_paths,
    signed_targets,
    subset_frame,
    subset_rows,
    targets_of,
    write_manifest,
)


def _frame(**extra) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "path": ["images/a.png", "/data/b.jpg", "c.png"],
            "tags": [["cat", "dog"], [], ["zebra"]],
            **extra,
        }
    )


def test_round_trip_without_official_split(tmp_path):
    write_manifest(tmp_path / "m.parquet", _frame())
    back = read_manifest(tmp_path / "m.parquet")
    assert list(back.columns) == ["image_id", "path", "tags", "official_split"]
    assert back["image_id"].tolist() == ["a", "b", "c"]
    assert back["path"].tolist() == ["images/a.png", "/data/b.jpg", "c.png"]
    assert back["tags"].tolist() == [["cat", "dog"], [], ["zebra"]]
    assert all(type(t) is list for t in back["tags"])
    assert back["official_split"].isna().all()
    schema = pq.read_schema(tmp_path / "m.parquet")
    assert schema.field("tags").type == pa.list_(pa.string())


def test_round_trip_with_official_split(tmp_path):
    write_manifest(tmp_path / "m.parquet", _frame(official_split=["train", None, "test"]))
    back = read_manifest(tmp_path / "m.parquet")
    assert back["official_split"].tolist()[0] == "train"
    assert back["official_split"].tolist()[2] == "test"
    assert pd.isna(back["official_split"].iloc[1])


def test_tuple_tags_written_as_lists(tmp_path):
    frame = _frame()
    frame["tags"] = [("cat",), (), ("a", "b")]
    write_manifest(tmp_path / "m.parquet", frame)
    assert read_manifest(tmp_path / "m.parquet")["tags"].tolist() == [["cat"], [], ["a", "b"]]


def test_write_missing_column(tmp_path):
    with pytest.raises(ValueError, match="tags"):
        write_manifest(tmp_path / "m.parquet", _frame().drop(columns=["tags"]))
    assert not (tmp_path / "m.parquet").exists()


def test_read_missing_column(tmp_path):
    table = pa.table({"image_id": ["a"], "path": ["a.png"], "official_split": [None]})
    pq.write_table(table, tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"lacks columns \['tags'\]"):
        read_manifest(tmp_path / "m.parquet")


@pytest.mark.parametrize("content", [None, b"", b"not a parquet file at all" * 10])
def test_unreadable_file(tmp_path, content):
    path = tmp_path / "m.parquet"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="cannot read manifest"):
        read_manifest(path)


def test_multi_hot_hand_built():
    vocabulary = ["cat", "dog", "zebra", "cow"]
    tag_lists = [["dog", "cat"], [], ["zebra", "unicorn"], ["cow", "cow", "dog"]]
    expected = np.array(
        [
            [1, 1, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 1, 0],
            [0, 1, 0, 1],
        ],
        dtype=np.float32,
    )
    out = multi_hot(tag_lists, vocabulary)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert multi_hot([], vocabulary).shape == (0, 4)


def test_resolve_paths(tmp_path, monkeypatch):
    folder = tmp_path / "dataset"
    folder.mkdir()
    absolute = str(tmp_path / "elsewhere" / "x.png")
    got = resolve_paths(folder / "manifest.parquet", ["images/a.png", absolute, "../b.png"])
    assert got == [folder / "images" / "a.png", Path(absolute), folder / ".." / "b.png"]
    monkeypatch.chdir(tmp_path)  # a relative manifest path is relative to the working directory
    got = resolve_paths("dataset/manifest.parquet", ["images/a.png"])
    assert got == [tmp_path.resolve() / "dataset" / "images" / "a.png"]
    assert got[0].is_absolute()


def test_subset_rows(tmp_path):
    manifest = _frame()
    split = pd.DataFrame({"image_id": ["c", "b", "a"], "subset": ["train", "test", "train"]})
    paths, tags = subset_rows(tmp_path / "m.parquet", manifest, split, "train")
    assert paths == [tmp_path.resolve() / "c.png", tmp_path.resolve() / "images" / "a.png"]  # split order
    assert tags == [["zebra"], ["cat", "dog"]]
    paths, tags = subset_rows(tmp_path / "m.parquet", manifest, split, "test")
    assert paths == [Path("/data/b.jpg")] and tags == [[]]
    assert subset_rows(tmp_path / "m.parquet", manifest, split, "val") == ([], [])


def test_optional_columns_round_trip_and_old_manifests(tmp_path):
    # an old manifest (no negatives, no test_settings) reads as before, without the columns
    write_manifest(tmp_path / "old.parquet", _frame())
    assert list(pq.read_schema(tmp_path / "old.parquet").names) == ["image_id", "path", "tags", "official_split"]
    old = read_manifest(tmp_path / "old.parquet")
    assert not has_negatives(old) and "test_settings" not in old

    frame = _frame(negatives=[["zebra"], ["cat"], []], test_settings=[None, ("zsl", "gzsl"), ["gzsl"]])
    write_manifest(tmp_path / "m.parquet", frame)
    schema = pq.read_schema(tmp_path / "m.parquet")
    assert schema.field("negatives").type == pa.list_(pa.string())
    back = read_manifest(tmp_path / "m.parquet")
    assert has_negatives(back)
    assert back["negatives"].tolist() == [["zebra"], ["cat"], []]
    assert back["test_settings"].tolist() == [None, ["gzsl", "zsl"], ["gzsl"]]  # sorted, null kept
    with pytest.raises(ValueError, match="test_settings"):
        write_manifest(tmp_path / "bad.parquet", _frame(test_settings=[["zsl"], ["gzsl"], ["fsl"]]))
    with pytest.raises(ValueError, match="test_settings"):
        write_manifest(tmp_path / "bad.parquet", _frame(test_settings=[["zsl"], [], None]))


def test_signed_targets_hand_built():
    vocabulary = ["cat", "dog", "zebra", "cow"]
    tags = [["dog"], [], ["zebra", "unicorn"], ["cow"]]
    negatives = [["cat", "cow"], ["dog"], [], ["cow", "unicorn"]]  # row 3: positive and negative
    expected = np.array([[-1, 1, 0, -1], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.int8)
    out = signed_targets(tags, negatives, vocabulary)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="negative lists"):
        signed_targets(tags, negatives[:2], vocabulary)
    rows = pd.DataFrame({"tags": tags, "negatives": negatives})
    np.testing.assert_array_equal(targets_of(rows, vocabulary), expected)
    np.testing.assert_array_equal(targets_of(rows.drop(columns="negatives"), vocabulary), multi_hot(tags, vocabulary))


def test_subset_frame_carries_the_split_columns():
    manifest = _frame(negatives=[[], ["cat"], []])
    split = pd.DataFrame({"image_id": ["c", "b", "a"], "subset": ["test", "test", "train"],
                          "zsl": [True, False, True], "gzsl": [True, True, True]})
    rows = subset_frame(manifest, split, "test")
    assert rows["image_id"].tolist() == ["c", "b"] and rows["zsl"].tolist() == [True, False]
    assert rows["negatives"].tolist() == [[], ["cat"]]
