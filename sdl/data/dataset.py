"""Torch datasets over a manifest, with per-sample deterministic augmentation.

Augmentations draw from a generator seeded by (seed, epoch, index), so a run gives the same
batches whatever the number of loader workers, and a resumed run continues exactly.
Training augmentation follows the paper's setup (section 4.1): cutout [12] with p = 0.5
(a random-colour square of half the image side, as the released code's ``CutoutPIL``),
horizontal flips, and optionally RandAugment (the released code's "standard ImageNet
augmentations"). The draws of each sample come from ``sdl.data.augment_draws``, which the
uint8-tensor path (``sdl.data.tensor_augment``, over the pre-decoded cache) shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sdl.config.training import AugmentConfig
from sdl.data.augment_draws import CutoutBox, draw_augmentation
from sdl.data.images import load_rgb


def paint_cutout(image: Image.Image, box: CutoutBox) -> Image.Image:
    """Paint the cutout rectangle ``box`` (``sdl.data.augment_draws.draw_cutout``) in its colour."""
    pixels = np.array(image)
    pixels[box.y1 : box.y2, box.x1 : box.x2] = box.colour
    return Image.fromarray(pixels)


def to_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """HWC uint8 RGB -> normalised CHW float32."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Bilinear resize to ``size`` x ``size`` (aspect not kept), as the released code's
    ``transforms.Resize((s, s))``; an image already that size is returned as it is."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.BILINEAR)


def prepare_image(image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The evaluation (and serving) input of an RGB image: square resize, then normalise."""
    return to_tensor(square_resize(image, size), mean, std)


class TaggedImageDataset(Dataset):
    """Images with multi-hot targets over a tag list (targets may be None for inference)."""

    def __init__(
        self,
        paths: Sequence[Path],
        targets: np.ndarray | None,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        if targets is not None and len(targets) != len(paths):
            raise ValueError(f"{len(paths)} images but {len(targets)} target rows")
        self.paths = list(paths)
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float32)
        self.image_size = image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._randaugment: Any = None

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        """The decoded, resized (un-augmented) image."""
        return square_resize(load_rgb(self.paths[index]), self.image_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.load(index)
        if self.augment is not None:
            image = self._augment(image, np.random.default_rng([self.seed, self.epoch, index]))
        tensor = to_tensor(image, self.mean, self.std)
        target = self.targets[index] if self.targets is not None else torch.empty(0)
        return tensor, target

    def _augment(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        assert self.augment is not None
        draws = draw_augmentation(self.augment, rng, *image.size)  # shared with sdl.data.tensor_augment
        if draws.flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if draws.cutout is not None:
            image = paint_cutout(image, draws.cutout)
        if draws.randaugment_seed is not None:
            from sdl._torchvision_compat import ensure_torchvision_importable

            ensure_torchvision_importable()
            if self._randaugment is None:  # built once: constructing it per sample is slow
                from torchvision.transforms import RandAugment

                self._randaugment = RandAugment()
            # RandAugment draws from torch's global generator: seed a forked copy per sample.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(draws.randaugment_seed)
                image = self._randaugment(image)
        return image
