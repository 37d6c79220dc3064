"""The training run's inputs (sdl.training.inputs): the loss sees 1/0 targets whatever the
manifest's verified negatives; validation keeps 1/-1/0 for the Open Images protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sdl.data.manifest import write_manifest
from sdl.data.split import TagSplit, write_split
from sdl.text.cache import write_vectors
from sdl.training.inputs import read_training_inputs

TAGS = TagSplit(seen=["bear", "cow", "dog"], unseen=["cat"])


def _inputs(folder: Path, negatives: bool) -> tuple[Path, Path, Path]:
    frame = pd.DataFrame({
        "image_id": list("abcd"), "path": [f"{i}.png" for i in "abcd"],
        "tags": [["dog"], ["cow", "bear"], ["cat"], ["bear"]],
        "official_split": ["train", "train", "test", "train"],
    })
    if negatives:
        frame["negatives"] = [["bear", "cat"], ["dog"], ["dog"], ["cat", "cow"]]
    write_manifest(folder / "manifest.parquet", frame)
    write_split(folder / "split", TAGS, pd.DataFrame({"image_id": list("abcd"), "subset": ["train", "train", "test", "val"]}))
    vectors = np.eye(4, dtype=np.float32)
    write_vectors(folder / "wordvecs.parquet", TAGS.all_tags, vectors, "test")
    return folder / "manifest.parquet", folder / "split", folder / "wordvecs.parquet"


def test_the_loss_sees_only_positives_and_validation_keeps_verified_negatives(tmp_path: Path) -> None:
    inputs = read_training_inputs(*_inputs(tmp_path, negatives=True), val_protocol="open_images")
    data = inputs.data
    # train targets over the seen tags (bear, cow, dog): a verified negative is a 0, like an unknown
    np.testing.assert_array_equal(data.train_targets, [[0, 0, 1], [1, 1, 0]])
    # validation (image d) over bear, cow, dog, cat: 1 / -1 / 0
    np.testing.assert_array_equal(data.val_targets, [[1, -1, 0, -1]])
    assert data.val_protocol == "open_images" and [p.name for p in data.val_paths] == ["d.png"]


def test_old_manifests_and_the_open_images_protocol(tmp_path: Path) -> None:
    paths = _inputs(tmp_path, negatives=False)
    data = read_training_inputs(*paths).data
    np.testing.assert_array_equal(data.val_targets, [[1, 0, 0, 0]])
    assert data.val_protocol == "sdl"
    with pytest.raises(ValueError, match=r"open_images.*negatives.*manifest"):
        read_training_inputs(*paths, val_protocol="open_images")
