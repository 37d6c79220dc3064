"""The embedded default dataset: multi-label mosaics of Animal-MNIST silhouettes.

Animal-MNIST (PyPI ``animal-mnist``, MIT) ships 10,000 real 28x28 silhouettes, 1,000 for each
of ten animals, as gzipped pickles (read with :mod:`sdl.safety.safe_pickle`, never plain pickle).
Each embedded image is a 2x2 grid holding 1 to ``max_objects`` different animals; its tags
are their names. Every silhouette is used at most once, so no silhouette appears in two
images (and thus never on both sides of a train/test split). Built deterministically from
a seed, with no network access.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from sdl.data.kinds.registry import Acquired, Sources, register_kind
from sdl.safety.atomic import atomic_open
from sdl.safety.errors import InputError
from sdl.safety.safe_pickle import safe_load

ANIMAL_MNIST_CLASSES = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)  # label order 0-9 of the package
SILHOUETTE_SIZE = 28


@dataclass(frozen=True)
class EmbeddedOptions:
    """How many mosaics to build and how."""

    num_images: int = 3000
    max_objects: int = 4
    cell_size: int = 32
    seed: int = 0


def load_animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Images (10000, 28, 28) uint8 and labels (10000,) from the installed package."""
    import animal_mnist

    folder = Path(animal_mnist.__file__).parent / "data" / "Animal_MNIST"
    images = np.asarray(safe_load(folder / "animal_data_version_3.gz"), dtype=np.uint8)
    labels = np.asarray(safe_load(folder / "animal_label_version_3.gz"), dtype=np.int64)
    if images.shape[1:] != (SILHOUETTE_SIZE, SILHOUETTE_SIZE) or len(images) != len(labels):
        raise InputError(f"unexpected Animal-MNIST arrays: {images.shape}, {labels.shape}")
    return images, labels


def plan_mosaics(labels: np.ndarray, options: EmbeddedOptions) -> list[list[int]]:
    """Choose, for each mosaic, distinct classes and one unused silhouette of each."""
    rng = np.random.default_rng(options.seed)
    num_classes = int(labels.max()) + 1
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in range(num_classes)]
    plans: list[list[int]] = []
    for _ in range(options.num_images):
        remaining = np.array([len(p) for p in pools], dtype=float)
        available = int((remaining > 0).sum())
        if available == 0:
            raise InputError(f"Animal-MNIST has too few silhouettes for {options.num_images} mosaics")
        count = int(rng.integers(1, min(options.max_objects, available) + 1))
        # Weight by what is left so no class runs out long before the others.
        classes = rng.choice(num_classes, size=count, replace=False, p=remaining / remaining.sum())
        plans.append([int(pools[c].pop()) for c in classes])
    return plans


def render_mosaic(silhouettes: list[np.ndarray], cell_size: int, rng: np.random.Generator) -> np.ndarray:
    """Place silhouettes in random cells of a 2x2 grid, jittered within their cell."""
    canvas = np.zeros((2 * cell_size, 2 * cell_size), dtype=np.uint8)
    cells = rng.permutation(4)[: len(silhouettes)]
    slack = cell_size - SILHOUETTE_SIZE
    for cell, silhouette in zip(cells, silhouettes, strict=True):
        top = (cell // 2) * cell_size + int(rng.integers(0, slack + 1))
        left = (cell % 2) * cell_size + int(rng.integers(0, slack + 1))
        if rng.random() < 0.5:
            silhouette = silhouette[:, ::-1]
        canvas[top : top + SILHOUETTE_SIZE, left : left + SILHOUETTE_SIZE] = silhouette
    return canvas


def build_embedded(out_dir: str | Path, options: EmbeddedOptions, progress: bool = False) -> pd.DataFrame:
    """Write the mosaics as PNG files under ``out_dir/images``; return the manifest rows.

    Deterministic for given options; an image already on disk is not written again, so an
    interrupted build resumes where it stopped.
    """
    if options.max_objects not in range(1, 5):
        raise ValueError(f"max_objects must be 1-4 (a 2x2 grid), got {options.max_objects}")
    if options.cell_size < SILHOUETTE_SIZE:
        raise ValueError(f"cell_size must be >= {SILHOUETTE_SIZE}, got {options.cell_size}")
    images, labels = load_animal_mnist()
    plans = plan_mosaics(labels, options)
    image_dir = Path(out_dir) / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    iterator = enumerate(plans)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(plans), desc="embedded mosaics", unit="img")
    for number, members in iterator:
        image_id = f"emb-{number:06d}"
        path = image_dir / f"{image_id}.png"
        tags = sorted(ANIMAL_MNIST_CLASSES[labels[i]] for i in members)
        rng = np.random.default_rng([options.seed, number])
        mosaic = render_mosaic([images[i] for i in members], options.cell_size, rng)
        if not path.exists():
            with atomic_open(path) as handle:
                Image.fromarray(mosaic, mode="L").save(handle, format="PNG")
        rows.append({"image_id": image_id, "path": f"images/{image_id}.png", "tags": tags})
    return pd.DataFrame(rows)


@register_kind("embedded", EmbeddedOptions)
def acquire_embedded(options: EmbeddedOptions, raw_dir: Path, sources: Sources) -> Acquired:
    """The embedded default: Animal-MNIST mosaics built offline (nothing is fetched)."""
    manifest = build_embedded(raw_dir, options, progress=sources.progress)
    tags = pd.DataFrame({"tag": list(ANIMAL_MNIST_CLASSES), "role": [""] * len(ANIMAL_MNIST_CLASSES)})
    return Acquired(manifest=manifest, tags=tags, report={"images": len(manifest), "wanted": options.num_images, "failed": 0})
