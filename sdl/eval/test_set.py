"""The test split as evaluation and the promotion gate see it: the test images, their targets
over the dataset's tags (seen first, then unseen) and the served vocabulary's vectors (the
dataset's tags first, then the extra tags of the vocabulary file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import TagSplit, read_split
from sdl.safety.errors import InputError
from sdl.text.vocabulary import read_serving_vocabulary


@dataclass(frozen=True)
class TestSet:
    """Test images, targets (N, C) over ``tags.all_tags`` and the served vocabulary."""

    paths: list[Path]
    tag_lists: list[list[str]]
    targets: np.ndarray
    tags: TagSplit
    vocabulary: pd.DataFrame  # tag, vector, role, unseen, ...: the dataset's tags first
    vectors: np.ndarray  # (V, d) of every served tag, in vocabulary order

    @property
    def dataset_vectors(self) -> np.ndarray:
        """The vectors of the dataset's tags (the columns of ``targets``)."""
        return self.vectors[: len(self.tags.all_tags)]


def read_test_set(manifest_path: str | Path, split_dir: str | Path, vocabulary_path: str | Path) -> TestSet:
    """Read the test split; the vocabulary must start with the split's tags (else the embed
    stage is out of date, and the error says so)."""
    tags, image_split = read_split(split_dir)
    vocabulary = read_serving_vocabulary(vocabulary_path)
    if vocabulary["tag"].tolist()[: len(tags.all_tags)] != tags.all_tags:
        raise InputError(f"{vocabulary_path} does not start with the split's tags: rerun the embed stage")
    vectors = np.stack(vocabulary["vector"].to_numpy()).astype(np.float32)
    paths, tag_lists = subset_rows(manifest_path, read_manifest(manifest_path), image_split, "test")
    return TestSet(paths=list(paths), tag_lists=tag_lists, targets=multi_hot(tag_lists, tags.all_tags), tags=tags,
                   vocabulary=vocabulary, vectors=vectors)
