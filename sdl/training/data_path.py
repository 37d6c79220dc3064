"""The training images of a run, read the way ``train.<dataset>.data_path`` says.

- ``jpeg``: ``sdl.data.dataset.TaggedImageDataset``, decode + resize + PIL augmentation per
  sample, float32 normalised tensors from the workers;
- ``uint8_cache``: ``sdl.data.decoded_dataset.DecodedImageDataset`` over the pre-decoded cache
  (``sdl.data.decoded_cache``, built here on first use, resumable), uint8 tensors from the
  workers, normalised on the device by ``sdl.training.device.device_batches``.

The cache lives in the train stage's working state (``--state``, like the checkpoints: not a
DVC output, rebuilt from the images whenever they change) unless ``decoded_cache_dir`` names
another folder (a larger or faster disk).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset

from sdl.config.training import TrainConfig
from sdl.data.dataset import TaggedImageDataset
from sdl.data.decoded_cache import ensure_decoded_cache
from sdl.data.decoded_dataset import DecodedImageDataset
from sdl.training.state import TrainData

log = logging.getLogger(__name__)


def decoded_cache_folder(config: TrainConfig, state_dir: Path) -> Path:
    """Where the run's decoded cache lives: ``decoded_cache_dir`` or ``<state>/decoded-<size>px``."""
    if config.decoded_cache_dir:
        return Path(config.decoded_cache_dir)
    return state_dir / f"decoded-{config.image_size}px"


def training_images(
    config: TrainConfig, data: TrainData, mean: Sequence[float], std: Sequence[float], state_dir: Path,
    progress: bool = False,
) -> Dataset:
    """The augmented training set of ``data`` for ``config.data_path``."""
    if config.data_path == "jpeg":
        return TaggedImageDataset(data.train_paths, data.train_targets, config.image_size, mean, std,
                                  augment=config.augment, seed=config.seed)
    cache = ensure_decoded_cache(
        data.train_paths, decoded_cache_folder(config, state_dir), config.image_size,
        workers=len(os.sched_getaffinity(0)), progress=progress,
    )
    return DecodedImageDataset(cache, data.train_targets, augment=config.augment, seed=config.seed)
