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
