"""The shared augmentation draws (sdl.data.augment_draws): the PIL path draws as it did before
they were shared, and the cutout box has the released code's geometry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdl.config.training import AugmentConfig
from sdl.data.augment_draws import draw_augmentation, draw_cutout
from sdl.data.dataset import TaggedImageDataset


def _reference_augment(image: Image.Image, config: AugmentConfig, rng: np.random.Generator) -> tuple[Image.Image, int | None]:
    """The PIL path as it was written before the draws were shared (flip, then cutout drawing
    its own centre and colour, then RandAugment's seed): the reference the refactor must keep."""
    if config.hflip and rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    if config.cutout_p > 0 and rng.random() < config.cutout_p:
        width, height = image.size
        cut_w, cut_h = int(config.cutout_factor * width + 0.5), int(config.cutout_factor * height + 0.5)
        cx, cy = int(rng.integers(width)), int(rng.integers(height))
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        pixels = np.array(image)
        pixels[y1:y2, x1:x2] = rng.integers(0, 256, size=3, dtype=np.uint8)
        image = Image.fromarray(pixels)
    seed = int(rng.integers(2**62)) if config.randaugment else None
    return image, seed


@pytest.mark.parametrize("config", [
    AugmentConfig(hflip=True, cutout_p=0.5), AugmentConfig(hflip=False, cutout_p=1.0, cutout_factor=0.3),
    AugmentConfig(hflip=True, cutout_p=0.0), AugmentConfig(hflip=True, cutout_p=0.5, randaugment=True),
])
def test_the_pil_path_draws_as_before(config):
    pixels = np.random.default_rng(3).integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    dataset = TaggedImageDataset([], None, 20, (0, 0, 0), (1, 1, 1), augment=config)
    dataset._randaugment = lambda image: image  # RandAugment itself: tests/data/test_tensor_randaugment.py
    for seed in range(60):
        expected, ra_seed = _reference_augment(Image.fromarray(pixels), config, np.random.default_rng([7, 1, seed]))
        got = dataset._augment(Image.fromarray(pixels), np.random.default_rng([7, 1, seed]))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
        draws = draw_augmentation(config, np.random.default_rng([7, 1, seed]), 20, 20)
        assert draws.randaugment_seed == ra_seed


def test_cutout_box_geometry_and_colour():
    """Half of a 10 px side is 5; the released CutoutPIL paints [c - 5 // 2, c + 5 // 2): 4 px,
    clipped at the borders; the centre is uniform over the pixels, the colour over 0-255."""
    rng = np.random.default_rng(0)
    boxes = [draw_cutout(10, 10, 0.5, rng) for _ in range(4000)]
    centres_x = {b.x1 + 2 for b in boxes if b.x1 > 0}
    assert centres_x == set(range(3, 10))  # interior centres 3..9 (x1 > 0)
    for box in boxes:
        assert 0 <= box.x1 < box.x2 <= 10 and 0 <= box.y1 < box.y2 <= 10
        assert box.x2 - box.x1 <= 4 and box.y2 - box.y1 <= 4
    inner = [b for b in boxes if 2 <= b.x1 and b.x2 <= 9]
    assert inner and all(b.x2 - b.x1 == 4 for b in inner)
    colours = np.array([b.colour for b in boxes])
    assert colours.min() == 0 and colours.max() == 255 and abs(colours.mean() - 127.5) < 5
