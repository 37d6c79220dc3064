"""The test split as evaluation and the promotion gate see it: the test images, their targets
over the dataset's tags (seen first, then unseen), the image set of each setting, and the
served vocabulary's vectors (the dataset's tags first, then the extra tags of the vocabulary
file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sdl.data.manifest import TEST_SETTINGS, has_negatives, read_manifest, resolve_paths, subset_frame, targets_of
from sdl.data.split import TagSplit, read_split
from sdl.safety.errors import InputError
from sdl.text.vocabulary import read_serving_vocabulary

# The protocols that drop a test image without a positive (sdl.eval.metrics): an image with no
# tag at all is then never scored, so it is not even run through the model.
DROPS_UNTAGGED = ("sdl", "open_images")


@dataclass(frozen=True)
class TestSet:
    """Test images, targets (N, C) over ``tags.all_tags`` and the served vocabulary.

    ``targets`` are 1/0, or 1/-1/0 where the manifest has verified negatives
    (``has_negatives``). ``image_sets`` maps a setting ("zsl", "gzsl") to the boolean mask of
    its own test images where the split gives the settings different sets; None: both
    settings use every test image.
    """

    paths: list[Path]
    tag_lists: list[list[str]]
    targets: np.ndarray
    tags: TagSplit
    vocabulary: pd.DataFrame  # tag, vector, role, unseen, ...: the dataset's tags first
    vectors: np.ndarray  # (V, d) of every served tag, in vocabulary order
    image_sets: dict[str, np.ndarray] | None = None
    has_negatives: bool = False

    @property
    def dataset_vectors(self) -> np.ndarray:
        """The vectors of the dataset's tags (the columns of ``targets``)."""
        return self.vectors[: len(self.tags.all_tags)]


def read_test_set(
    manifest_path: str | Path, split_dir: str | Path, vocabulary_path: str | Path, protocol: str = "all"
) -> TestSet:
    """Read the test split; the vocabulary must start with the split's tags (else the embed
    stage is out of date, and the error says so). Under a protocol that drops images without
    a positive (``DROPS_UNTAGGED``) the test images without any tag are left out here."""
    tags, image_split = read_split(split_dir)
    vocabulary = read_serving_vocabulary(vocabulary_path)
    if vocabulary["tag"].tolist()[: len(tags.all_tags)] != tags.all_tags:
        raise InputError(f"{vocabulary_path} does not start with the split's tags: rerun the embed stage")
    vectors = np.stack(vocabulary["vector"].to_numpy()).astype(np.float32)
    manifest = read_manifest(manifest_path)
    rows = subset_frame(manifest, image_split, "test")
    if protocol in DROPS_UNTAGGED:
        vocab = set(tags.all_tags)
        rows = rows[[any(t in vocab for t in ts) for ts in rows["tags"]]].reset_index(drop=True)
    image_sets = None
    if any(setting in rows.columns for setting in TEST_SETTINGS):
        image_sets = {s: rows[s].to_numpy(dtype=bool) for s in TEST_SETTINGS if s in rows.columns}
    return TestSet(
        paths=resolve_paths(manifest_path, rows["path"]), tag_lists=[list(t) for t in rows["tags"]],
        targets=targets_of(rows, tags.all_tags), tags=tags, vocabulary=vocabulary, vectors=vectors,
        image_sets=image_sets, has_negatives=has_negatives(manifest),
    )
