"""Downloading a dataset: acquire its raw data through its kind, cache the images pre-resized,
and return the manifest and tag table (what the ``download`` stage writes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sdl.data.image_cache import cache_images
from sdl.data.kinds import Acquired, check_options, get_kind
from sdl.data.sources import NetworkSources
from sdl.safety.errors import UserError


class DownloadError(UserError):
    """The download obtained too few of the images it wanted."""


def acquire(kind: str, options: dict[str, Any], raw_dir: str | Path, progress: bool = False) -> Acquired:
    """Acquire a dataset of ``kind`` into ``raw_dir`` over the network (or local folders);
    fail with :class:`DownloadError` when fewer than ``min_images_fraction`` of the wanted
    images were obtained (dead URLs, a bucket refusing access)."""
    checked = check_options(kind, options, "download")
    Path(raw_dir).mkdir(parents=True, exist_ok=True)
    acquired = get_kind(kind).acquire(checked, Path(raw_dir), NetworkSources(checked, progress))
    check_obtained(kind, acquired.report, getattr(checked, "min_images_fraction", 0.0))
    return acquired


def check_obtained(kind: str, report: dict[str, Any], min_fraction: float) -> None:
    """Raise :class:`DownloadError` when the report's ``images`` / ``wanted`` is below ``min_fraction``."""
    wanted, obtained = int(report.get("wanted") or 0), int(report.get("images") or 0)
    if wanted and obtained / wanted >= min_fraction and obtained:
        return
    if not wanted:
        raise DownloadError(f"{kind}: the lists name no image to download: check download.<dataset>.options")
    first = (report.get("failures_sample") or [[None, "no failure recorded"]])[0]
    raise DownloadError(
        f"{kind}: obtained {obtained} of {wanted} images ({obtained / wanted:.0%}, below min_images_fraction "
        f"{min_fraction:g}); first failure: {first[-1]}\n"
        f"Put the images you have in download.<dataset>.options.image_dir (or lower min_images_fraction)"
    )


@dataclass
class Downloaded:
    """A dataset ready for the later stages: manifest (paths relative to its own folder), tag
    table, and the report of counts."""

    manifest: pd.DataFrame
    tags: pd.DataFrame
    report: dict[str, Any]


def download_dataset(
    params: Any, raw_dir: str | Path, cache_dir: str | Path, manifest_path: str | Path, progress: bool = False
) -> Downloaded:
    """Acquire per ``params`` (``sdl.config.DownloadParams``), then build the image cache when
    ``params.cache_short_side`` > 0; the manifest's paths are relative to ``manifest_path``'s folder."""
    raw, manifest_path = Path(raw_dir), Path(manifest_path)
    acquired = acquire(params.kind, params.options, raw, progress=progress)
    manifest = acquired.manifest.copy()
    base = manifest_path.resolve().parent
    manifest["path"] = [p if os.path.isabs(p) else os.path.relpath((raw / p).resolve(), base) for p in manifest["path"]]
    Path(cache_dir).mkdir(parents=True, exist_ok=True)  # a declared output, empty without a cache
    report: dict[str, Any] = {"download": {k: v for k, v in acquired.report.items() if isinstance(v, int | float | str)}}
    if params.cache_short_side:
        manifest, cache_report = cache_images(
            manifest, manifest_path, cache_dir, params.cache_short_side, workers=params.cache_workers, progress=progress,
        )
        report["image_cache"] = {k: v for k, v in cache_report.items() if k != "failures"}
    report["manifest"] = {"images": len(manifest), "tags": len(acquired.tags)}
    return Downloaded(manifest=manifest, tags=acquired.tags, report=report)
