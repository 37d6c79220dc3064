"""The training augmentation on uint8 image tensors, and the normalisation of uint8 batches.

The same augmentation as the PIL path (``sdl.data.dataset``): the same draws per sample
(``sdl.data.augment_draws``), applied in the same order to 3 x H x W uint8 tensors:

- horizontal flip: the columns reversed (exactly PIL's ``FLIP_LEFT_RIGHT``);
- cutout: the rectangle painted in its colour (exactly the PIL path's pixels);
- RandAugment: ``sdl.data.tensor_randaugment``, torchvision's RandAugment as it computes on
  tensors, whose pixels differ from its PIL computation within the tolerances measured in
  tests/data/test_tensor_randaugment.py (same operations, same magnitudes).

Normalisation is done once per batch (:class:`Normalizer`, on the GPU in training: the loader
then moves a quarter of the bytes), with the same float32 operations as
``sdl.data.dataset.to_tensor``, so the two paths give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sdl.config.training import AugmentConfig
from sdl.data.augment_draws import AugmentDraws, CutoutBox, draw_augmentation
from sdl.data.tensor_randaugment import TensorRandAugment


def hflip(image: torch.Tensor) -> torch.Tensor:
    """Mirror a ... x H x W tensor left to right (a new tensor)."""
    return image.flip(-1)


def paint_cutout(image: torch.Tensor, box: CutoutBox) -> torch.Tensor:
    """Paint ``box`` into a 3 x H x W uint8 tensor, in place; returns it."""
    colour = torch.tensor(box.colour, dtype=image.dtype).reshape(3, 1, 1)
    image[:, box.y1 : box.y2, box.x1 : box.x2] = colour
    return image


class TensorAugment:
    """The augmentation of one sample on a 3 x H x W uint8 tensor, drawn from the sample's
    generator as the PIL path draws it."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self._randaugment: TensorRandAugment | None = None

    def draws(self, rng: np.random.Generator, width: int, height: int) -> AugmentDraws:
        return draw_augmentation(self.config, rng, width, height)

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The augmented image (the input is left unchanged)."""
        _, height, width = image.shape
        return self.apply(image, self.draws(rng, width, height))

    def apply(self, image: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        image = hflip(image) if draws.flip else image.clone()
        if draws.cutout is not None:
            paint_cutout(image, draws.cutout)
        if draws.randaugment_seed is not None:
            if self._randaugment is None:  # built on first use: per worker process
                self._randaugment = TensorRandAugment()
            image = self._randaugment(image, draws.randaugment_seed)
        return image


class Normalizer:
    """uint8 batches (B, 3, H, W) to float32 ``(x / 255 - mean) / std`` on ``device``: the
    operations of ``sdl.data.dataset.to_tensor`` in the same order, so the same numbers (the
    memory format of the batch is kept). The constants are made once, on the device (make it
    inside the CUDA stream that will use it).

    255 is a tensor on the device, not a Python number: CUDA divides by a host scalar as a
    multiplication by its reciprocal, which can round differently from a division."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu") -> None:
        self.scale = torch.tensor(255.0, dtype=torch.float32, device=device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 batch, got {images.dtype}")
        return (images.to(torch.float32) / self.scale - self.mean) / self.std


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """One uint8 batch (B, 3, H, W) or image (3, H, W) normalised (see :class:`Normalizer`)."""
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    out = Normalizer(mean, std, images.device)(batch)
    return out if images.dim() == 4 else out.squeeze(0)
