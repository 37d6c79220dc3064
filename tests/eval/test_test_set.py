"""The test split as evaluation reads it (sdl.eval.test_set): targets with verified negatives,
each setting's own images, and the untagged test images a protocol drops or keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sdl.config.params import EvaluateParams
from sdl.data.manifest import write_manifest
from sdl.data.split import TagSplit, write_split
from sdl.eval.model_evaluation import check_protocol_data, evaluate_model
from sdl.eval.test_set import read_test_set
from sdl.safety.atomic import write_parquet

TAGS = TagSplit(seen=["bear", "cow", "dog"], unseen=["cat", "zebra"])


def _write(folder: Path, negatives: bool, settings: bool) -> tuple[Path, Path, Path]:
    frame = pd.DataFrame({
        "image_id": ["a", "b", "c", "d", "e"],
        "path": [f"{i}.png" for i in "abcde"],
        "tags": [["dog"], ["cat", "bear"], [], ["zebra"], ["cow"]],
        "official_split": ["train", "test", "test", "test", "test"],
    })
    if negatives:
        frame["negatives"] = [[], ["dog"], ["cat", "cow"], [], ["zebra"]]
    write_manifest(folder / "manifest.parquet", frame)
    images = pd.DataFrame({"image_id": list("abcde"), "subset": ["train", "test", "test", "test", "test"]})
    if settings:
        images["zsl"] = [True, True, False, True, False]
        images["gzsl"] = [True, True, True, False, True]
    write_split(folder / "split", TAGS, images)
    vectors = np.eye(6, dtype=np.float32)[:, :4]
    tags = [*TAGS.all_tags, "extra"]
    write_parquet(folder / "vocabulary.parquet", pa.table({
        "tag": tags, "vector": [list(map(float, v)) for v in vectors], "role": ["seen"] * 3 + ["unseen"] * 3,
        "unseen": [False] * 3 + [True] * 3,
    }))
    return folder / "manifest.parquet", folder / "split", folder / "vocabulary.parquet"


def test_targets_image_sets_and_untagged_images(tmp_path: Path) -> None:
    paths = _write(tmp_path, negatives=True, settings=True)
    every = read_test_set(*paths, protocol="all")
    assert [p.name for p in every.paths] == ["b.png", "c.png", "d.png", "e.png"]
    # columns: bear, cow, dog, cat, zebra; 1 positive, -1 verified negative, 0 unverified
    np.testing.assert_array_equal(every.targets, [[1, 0, -1, 1, 0], [0, -1, 0, -1, 0], [0, 0, 0, 0, 1],
                                                  [0, 1, 0, 0, -1]])
    assert every.has_negatives and every.dataset_vectors.shape == (5, 4) and every.vectors.shape == (6, 4)
    assert every.image_sets is not None
    np.testing.assert_array_equal(every.image_sets["zsl"], [True, False, True, False])
    np.testing.assert_array_equal(every.image_sets["gzsl"], [True, True, False, True])
    # "sdl" and "open_images" never score an image without a tag: c is not even read
    for protocol in ("sdl", "open_images"):
        dropped = read_test_set(*paths, protocol=protocol)
        assert [p.name for p in dropped.paths] == ["b.png", "d.png", "e.png"]
        np.testing.assert_array_equal(dropped.image_sets["zsl"], [True, True, False])
        np.testing.assert_array_equal(dropped.targets, every.targets[[0, 2, 3]])


def test_old_splits_and_manifests_read_as_before(tmp_path: Path) -> None:
    test = read_test_set(*_write(tmp_path, negatives=False, settings=False))
    assert test.image_sets is None and not test.has_negatives
    assert test.targets.dtype == np.float32 and set(np.unique(test.targets)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"open_images.*negatives"):
        check_protocol_data("open_images", test)
    with pytest.raises(ValueError, match=r"open_images.*negatives"):
        evaluate_model(tmp_path / "no-model", test, EvaluateParams(ks=[1], protocol="open_images"))
    check_protocol_data("sdl", test)
