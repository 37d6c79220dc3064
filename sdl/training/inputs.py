"""The training run's inputs read from the pipeline's files: the manifest, the split and the
tag vectors, as :class:`~sdl.training.state.TrainData`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sdl.data.manifest import has_negatives, multi_hot, read_manifest, resolve_paths, subset_frame, subset_rows, targets_of
from sdl.data.split import TagSplit, read_split
from sdl.text.cache import read_cache
from sdl.training.state import TrainData


@dataclass(frozen=True)
class TrainingInputs:
    """The training data with where it came from: the tag split and the manifest."""

    data: TrainData
    tags: TagSplit
    manifest: pd.DataFrame


def read_training_inputs(
    manifest_path: str | Path, split_dir: str | Path, wordvecs_path: str | Path, val_protocol: str = "sdl"
) -> TrainingInputs:
    """Train images with seen-tag targets, validation images with targets over every tag, and
    the tag vectors (seen first, then unseen).

    The loss sees 1/0 targets: only a positive tag is 1, a verified negative and an unverified
    tag alike are 0 (the released ``SDL_loss.py``:46 treats every label but 1 as a negative).
    The validation targets keep the manifest's verified negatives (1/-1/0) for a protocol that
    needs them (``val_protocol``, e.g. "open_images")."""
    manifest = read_manifest(manifest_path)
    if val_protocol == "open_images" and not has_negatives(manifest):
        raise ValueError(f"evaluate protocol 'open_images' needs verified negatives in {manifest_path} "
                         "(a 'negatives' column, written by the open_images kind): rerun the download stage, "
                         "or use protocol 'sdl' or 'all'")
    tags, image_split = read_split(split_dir)
    vectors = read_cache(wordvecs_path, tags.all_tags)
    train_paths, train_tags = subset_rows(manifest_path, manifest, image_split, "train")
    val_rows = subset_frame(manifest, image_split, "val")
    num_seen = len(tags.seen)
    data = TrainData(
        train_paths=train_paths, train_targets=multi_hot(train_tags, tags.seen), seen_vectors=vectors[:num_seen],
        val_paths=resolve_paths(manifest_path, val_rows["path"]), val_targets=targets_of(val_rows, tags.all_tags),
        all_vectors=vectors, seen_index=np.arange(num_seen), unseen_index=np.arange(num_seen, len(tags.all_tags)),
        val_protocol=val_protocol,
    )
    return TrainingInputs(data=data, tags=tags, manifest=manifest)
