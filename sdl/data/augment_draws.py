"""The random draws of one training sample's augmentation, shared by both data paths.

The PIL path (``sdl.data.dataset``) and the uint8-tensor path (``sdl.data.tensor_augment``)
draw from the same per-sample generator, ``numpy.random.default_rng([seed, epoch, index])``,
through this one function, in one order: the flip, then whether to cut out, then the cutout's
centre and colour, then the seed of RandAugment's own torch generator. For a given seed both
paths therefore flip the same images and paint the same rectangles in the same colours, and
RandAugment picks the same operations with the same magnitudes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdl.config.training import AugmentConfig


@dataclass(frozen=True)
class CutoutBox:
    """A rectangle ``[x1, x2) x [y1, y2)`` (clipped to the image) painted in ``colour`` (RGB)."""

    x1: int
    y1: int
    x2: int
    y2: int
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class AugmentDraws:
    """What one sample's augmentation does: flip or not, the cutout box (or none), and the seed
    of RandAugment's torch generator (None: RandAugment is off)."""

    flip: bool
    cutout: CutoutBox | None
    randaugment_seed: int | None


def draw_cutout(width: int, height: int, factor: float, rng: np.random.Generator) -> CutoutBox:
    """The released code's ``CutoutPIL``: a square of ``factor`` x the image side (each side
    rounded), centred at a uniformly random pixel, clipped to the image, in a random colour."""
    cut_w, cut_h = int(factor * width + 0.5), int(factor * height + 0.5)
    cx, cy = int(rng.integers(width)), int(rng.integers(height))
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    red, green, blue = (int(c) for c in rng.integers(0, 256, size=3, dtype=np.uint8))
    return CutoutBox(x1, y1, x2, y2, (red, green, blue))


def draw_augmentation(config: AugmentConfig, rng: np.random.Generator, width: int, height: int) -> AugmentDraws:
    """The draws of one sample for an image of ``width`` x ``height`` (flip with p = 0.5, cutout
    with ``cutout_p``, RandAugment when on), in the order both data paths share."""
    flip = bool(config.hflip and rng.random() < 0.5)
    cutout = None
    if config.cutout_p > 0 and rng.random() < config.cutout_p:
        cutout = draw_cutout(width, height, config.cutout_factor, rng)
    seed = int(rng.integers(2**62)) if config.randaugment else None
    return AugmentDraws(flip=flip, cutout=cutout, randaugment_seed=seed)
