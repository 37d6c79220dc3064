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


def acquire(kind: str, options: dict[str, Any], raw_dir: str | Path, progress: bool = False) -> Acquired:
    """Acquire a dataset of ``kind`` into ``raw_dir`` over the network (or local folders)."""
    checked = check_options(kind, options, "download")
    Path(raw_dir).mkdir(parents=True, exist_ok=True)
    return get_kind(kind).acquire(checked, Path(raw_dir), NetworkSources(checked, progress))


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
