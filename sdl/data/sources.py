"""Dataset acquisition, by kind: each kind builds or fetches raw data into a folder and
returns its manifest and its tag table.

A kind is a function ``(options, raw_dir, progress) -> Acquired``, registered by name. The
``download`` stage picks it from ``download.<dataset>.kind`` in params.yaml and passes
``download.<dataset>.options``; the stages after it only see the manifest and tag table, so
they assume nothing about where the data came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sdl.data.embedded import ANIMAL_MNIST_CLASSES, EmbeddedSpec, build_embedded
from sdl.io import atomic_write_text
from sdl.typed_config import ParamsError, from_mapping

TAG_ROLES = ("seen", "unseen", "")


@dataclass
class Acquired:
    """What a download produced: the manifest (paths relative to ``raw_dir``), the tags with
    their role where the dataset fixes the zero-shot split, and counts for the report."""

    manifest: pd.DataFrame
    tags: pd.DataFrame  # columns: tag, role ("seen" / "unseen" / "")
    report: dict[str, Any]


Acquirer = Callable[[dict[str, Any], Path, bool], Acquired]
DATASET_KINDS: dict[str, Acquirer] = {}


def register_kind(name: str) -> Callable[[Acquirer], Acquirer]:
    """Register an acquisition function under ``name``."""

    def decorate(function: Acquirer) -> Acquirer:
        DATASET_KINDS[name] = function
        return function

    return decorate


def acquire(kind: str, options: dict[str, Any], raw_dir: Path, progress: bool = False) -> Acquired:
    """Run the acquisition function of ``kind``."""
    if kind not in DATASET_KINDS:
        raise ParamsError(f"unknown dataset kind {kind!r}; known: {sorted(DATASET_KINDS)}")
    raw_dir.mkdir(parents=True, exist_ok=True)
    return DATASET_KINDS[kind](options, raw_dir, progress)


def check_options(kind: str, options: dict[str, Any], where: str) -> None:
    """Check ``download.<dataset>`` before any work starts: ``kind`` is known and ``options``
    build that kind's spec (unknown keys, wrong types and impossible values are named)."""
    if kind not in DATASET_KINDS:
        raise ParamsError(f"{where}.kind: unknown dataset kind {kind!r}; known: {sorted(DATASET_KINDS)}")
    spec = kind_specs().get(kind)
    if spec is not None:
        from_mapping(spec, options, f"{where}.options")


def write_tags(path: str | Path, tags: pd.DataFrame) -> None:
    """Write the tag table (tag, role) as CSV, atomically."""
    bad = sorted(set(tags["role"]) - set(TAG_ROLES))
    if bad:
        raise ValueError(f"unknown tag roles {bad}")
    atomic_write_text(path, tags[["tag", "role"]].to_csv(index=False))


def read_tags(path: str | Path) -> pd.DataFrame:
    """Read the tag table written by :func:`write_tags`."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if list(frame.columns) != ["tag", "role"]:
        raise ValueError(f"{path}: expected columns tag,role; got {list(frame.columns)}")
    return frame


@register_kind("embedded")
def acquire_embedded(options: dict[str, Any], raw_dir: Path, progress: bool) -> Acquired:
    """The embedded default: Animal-MNIST mosaics built offline (see sdl.data.embedded)."""
    spec = from_mapping(EmbeddedSpec, options, "download.options")
    manifest = build_embedded(raw_dir, spec, progress=progress)
    tags = pd.DataFrame({"tag": list(ANIMAL_MNIST_CLASSES), "role": [""] * len(ANIMAL_MNIST_CLASSES)})
    return Acquired(manifest=manifest, tags=tags, report={"images": len(manifest), "failed": 0})


# Registration of the fetched kinds: each module registers itself with @register_kind on
# import. Imported last because they import Acquired/register_kind from this module.
from sdl.data import coco, nus_wide, open_images  # noqa: E402,F401


def kind_specs() -> dict[str, type]:
    """The options dataclass of each kind, checked with the params (sdl.config) before a stage
    does any work. A function: the kind modules import this one, so they may be half-imported
    while it loads."""
    return {"embedded": EmbeddedSpec, "nus_wide": nus_wide.NusWideSpec, "coco": coco.CocoSpec,
            "open_images": open_images.OpenImagesSpec}
