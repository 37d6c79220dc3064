"""The pre-resized image cache: decode every image once, keep a small JPEG for training.

Training the paper's models reads each image 7-20 times (epochs); decoding full-size Flickr
or Open Images JPEGs every time makes the loader, not the GPU, the bottleneck. The cache
holds each image decoded (EXIF orientation applied, RGB), scaled so its short side is
``short_side`` pixels (never upscaled), as JPEG. Images that cannot be decoded are left out
and counted. Existing cache files are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from sdl.data.images import ImageDecodeError, load_rgb
from sdl.data.manifest import resolve_paths
from sdl.safety.atomic import atomic_write_bytes

log = logging.getLogger(__name__)


def resized(image: Image.Image, short_side: int) -> Image.Image:
    """Scale so the short side is ``short_side`` (aspect kept); smaller images stay as they are."""
    width, height = image.size
    scale = short_side / min(width, height)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.BICUBIC, reducing_gap=3.0)


def _cache_one(source: Path, target: Path, short_side: int, quality: int) -> str | None:
    """Write one cache file; return None on success (or reuse), else the reason it failed."""
    if target.exists() and target.stat().st_size > 0:
        return None
    try:
        image = resized(load_rgb(source), short_side)
    except ImageDecodeError as error:
        return str(error)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    atomic_write_bytes(target, buffer.getvalue())
    return None


def cache_images(
    manifest: pd.DataFrame,
    manifest_path: str | Path,
    cache_dir: str | Path,
    short_side: int,
    *,
    quality: int = 90,
    workers: int = 4,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cache every manifest image; return the manifest pointing at the cache (paths relative to
    the manifest's folder, undecodable images removed) and a report of counts and failures."""
    if short_side < 16:
        raise ValueError(f"cache short_side must be >= 16, got {short_side}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for leftover in cache_dir.glob(".*.tmp"):  # a killed run's unfinished writes (sdl.safety.atomic.atomic_open)
        leftover.unlink(missing_ok=True)
    sources = resolve_paths(manifest_path, manifest["path"])
    targets = [cache_dir / f"{image_id}.jpg" for image_id in manifest["image_id"]]
    already = sum(t.exists() for t in targets)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL decodes without the GIL
        results = pool.map(lambda pair: _cache_one(pair[0], pair[1], short_side, quality), zip(sources, targets))
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(targets), desc="resizing images", unit="img")
        failures = list(results)
    ok = [reason is None for reason in failures]
    base = Path(manifest_path).resolve().parent
    cached = manifest.loc[ok].copy()
    cached["path"] = [str(t.resolve().relative_to(base)) if t.resolve().is_relative_to(base) else str(t.resolve())
                      for t, good in zip(targets, ok, strict=True) if good]
    failed = [(image_id, reason) for image_id, reason in zip(manifest["image_id"], failures, strict=True) if reason]
    report = {
        "cached": int(sum(ok)) - already, "reused": already, "failed": len(failed),
        "failures": failed[:100], "short_side": short_side,
    }
    if failed:
        shown = "; ".join(f"{image_id}: {reason}" for image_id, reason in failed[:10])
        log.warning("%d images could not be decoded and are left out: %s%s", len(failed), shown,
                    f"; ... ({len(failed) - 10} more)" if len(failed) > 10 else "")
    return cached.reset_index(drop=True), report
