"""The training run's inputs read from the pipeline's files: the manifest, the split and the
tag vectors, as :class:`~sdl.training.state.TrainData`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import TagSplit, read_split
from sdl.text.cache import read_cache
from sdl.training.state import TrainData


@dataclass(frozen=True)
class TrainingInputs:
    """The training data with where it came from: the tag split and the manifest."""

    data: TrainData
    tags: TagSplit
    manifest: pd.DataFrame


def read_training_inputs(manifest_path: str | Path, split_dir: str | Path, wordvecs_path: str | Path) -> TrainingInputs:
    """Train images with seen-tag targets, validation images with targets over every tag, and
    the tag vectors (seen first, then unseen)."""
    manifest = read_manifest(manifest_path)
    tags, image_split = read_split(split_dir)
    vectors = read_cache(wordvecs_path, tags.all_tags)
    train_paths, train_tags = subset_rows(manifest_path, manifest, image_split, "train")
    val_paths, val_tags = subset_rows(manifest_path, manifest, image_split, "val")
    num_seen = len(tags.seen)
    data = TrainData(
        train_paths=train_paths, train_targets=multi_hot(train_tags, tags.seen), seen_vectors=vectors[:num_seen],
        val_paths=val_paths, val_targets=multi_hot(val_tags, tags.all_tags), all_vectors=vectors,
        seen_index=np.arange(num_seen), unseen_index=np.arange(num_seen, len(tags.all_tags)),
    )
    return TrainingInputs(data=data, tags=tags, manifest=manifest)
