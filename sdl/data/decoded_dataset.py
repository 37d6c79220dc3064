"""Training images from the pre-decoded cache (``sdl.data.decoded_cache``), augmented on uint8
tensors (``sdl.data.tensor_augment``).

Items are (3 x size x size uint8 image, target row). The augmentation of item ``index`` in
epoch ``epoch`` draws from ``numpy.random.default_rng([seed, epoch, index])``, the generator
the PIL path (``sdl.data.dataset.TaggedImageDataset``) draws from, through the same function:
the same flips, cutout rectangles and colours, and RandAugment operations. Batches stay uint8
until the device: ``sdl.training.device.device_batches`` normalises them there with
``sdl.data.tensor_augment.normalize`` (the PIL path's numbers).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from sdl.config.training import AugmentConfig
from sdl.data.decoded_cache import DecodedCache
from sdl.data.tensor_augment import TensorAugment


class DecodedImageDataset(Dataset):
    """Cached uint8 images with multi-hot targets, augmented per sample on tensors."""

    def __init__(self, cache: DecodedCache, targets: np.ndarray, augment: AugmentConfig | None = None,
                 seed: int = 0) -> None:
        if len(targets) != len(cache):
            raise ValueError(f"{len(cache)} cached images but {len(targets)} target rows")
        self.cache = cache
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.image_size = cache.size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._augment = TensorAugment(augment) if augment is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def load(self, index: int) -> torch.Tensor:
        """The un-augmented image, 3 x size x size uint8 (a copy out of the mapped file)."""
        return torch.from_numpy(np.ascontiguousarray(self.cache.pixels[index].transpose(2, 0, 1)))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.load(index)
        if self._augment is not None:
            image = self._augment(image, np.random.default_rng([self.seed, self.epoch, index]))
        return image, self.targets[index]
