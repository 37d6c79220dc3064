"""Tiny synthetic tagged images: each tag a coloured square, so a small model learns them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "yellow": (255, 255, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255),
}


SEEN = ["red", "green", "blue", "yellow"]


UNSEEN = ["cyan", "magenta"]


def make_tagged_images(folder: Path, count: int, pool: list[str], seed: int) -> tuple[list[Path], list[list[str]]]:
    """32 px black images with one 11 px square of each tag's colour, in distinct quadrants."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths, tags = [], []
    for i in range(count):
        chosen = sorted(rng.choice(pool, size=int(rng.integers(1, 3)), replace=False).tolist())
        pixels = np.zeros((32, 32, 3), dtype=np.uint8)
        for cell, tag in zip(rng.permutation(4), chosen, strict=False):
            top, left = (cell // 2) * 16 + int(rng.integers(0, 5)), (cell % 2) * 16 + int(rng.integers(0, 5))
            pixels[top : top + 11, left : left + 11] = COLOURS[tag]
        path = folder / f"{i:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
        tags.append(chosen)
    return paths, tags


def photo_like(index: int, size: int) -> np.ndarray:
    """A size x size x 3 uint8 image with a photo's statistics (smooth colour fields, a few
    shapes, mild noise, through JPEG at quality 90), the same for the same ``index``."""
    import io

    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng([11, index, size])
    image = Image.fromarray(rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, size)), int(rng.integers(0, size))
        x1, y1 = x0 + int(rng.integers(4, size // 2)), y0 + int(rng.integers(4, size // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.int16)
    pixels = np.clip(pixels + rng.normal(0, 6, size=pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()
