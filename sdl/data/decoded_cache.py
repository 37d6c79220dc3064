"""The pre-decoded image cache: every training image decoded once, at the training size, into
one memory-mapped file of uint8 pixels.

Decoding a JPEG costs the loader more than everything else it does (BENCHMARKS.md, "Data
loader"); reading 224 x 224 x 3 bytes from a memory-mapped file costs almost nothing, and the
page cache keeps them in memory after the first epoch. The cache holds exactly the pixels the
PIL path trains on before augmentation: ``square_resize(load_rgb(path), size)`` of
``sdl.data.dataset`` (EXIF orientation, RGB, bilinear resize to size x size).

A cache is a folder:

- ``pixels.npy``: N x size x size x 3 uint8, row i the i-th image (NumPy's .npy format, so
  ``numpy.load(..., mmap_mode="r")`` reads it anywhere);
- ``index.parquet``: row -> source path;
- ``cache.json``: size, count and the fingerprint of the sources (their paths in order, file
  sizes and modification times), written last: a folder without it is not a finished cache.

Building writes ``pixels.npy.partial`` and, after every chunk of images, the flushed rows'
mask (``filled.npy``, atomically), beside the sources' sizes and times it started from
(``sources.npy``): a killed build resumes where it stopped, decoding again only the rows not
done and those whose file changed meanwhile (an image fixed after a decoding error, say), and
the finished file is renamed into place. One process builds while the others wait for the folder's lock
(all ranks of a multi-GPU run may call :func:`ensure_decoded_cache`). Its size is N x 147 KiB
at 224 px (NUS-WIDE's 150k training images: 22 GB): the build checks the free disk space first.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sdl.data.dataset import square_resize
from sdl.data.images import ImageDecodeError, load_rgb
from sdl.safety.atomic import atomic_write_bytes, read_json, write_json, write_parquet
from sdl.safety.errors import InputError
from sdl.safety.locks import file_lock

log = logging.getLogger(__name__)

VERSION = 1
PIXELS, INDEX, META = "pixels.npy", "index.parquet", "cache.json"
PARTIAL, FILLED, SOURCES, BUILDING, LOCK = "pixels.npy.partial", "filled.npy", "sources.npy", "building.json", ".lock"
CHUNK = 512  # images decoded between two saves of the progress mask


class DecodedCache:
    """A finished cache: ``pixels`` (read-only, memory-mapped on first use in each process,
    so that loader workers map the file rather than receive a copy of it)."""

    def __init__(self, folder: str | Path, size: int, count: int) -> None:
        self.folder, self.size, self.count = Path(folder), size, count
        self._pixels: np.ndarray | None = None
        self._pid = -1

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None or self._pid != os.getpid():
            self._pixels = np.load(self.folder / PIXELS, mmap_mode="r")
            self._pid = os.getpid()
        return self._pixels

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "size": self.size, "count": self.count, "_pixels": None, "_pid": -1}


def source_stats(paths: Sequence[str | Path]) -> np.ndarray:
    """(N, 2) int64: each source's size in bytes and modification time (ns)."""
    stats = np.empty((len(paths), 2), dtype=np.int64)
    for row, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise ImageDecodeError(f"{path}: file not found (building the decoded image cache)") from None
        stats[row] = (stat.st_size, stat.st_mtime_ns)
    return stats


def _layout(paths: Sequence[str | Path], size: int) -> str:
    digest = hashlib.sha256(f"v{VERSION} size={size} n={len(paths)}".encode())
    for path in paths:
        digest.update(f"\n{path}".encode())
    return digest.hexdigest()


def sources_fingerprint(paths: Sequence[str | Path], size: int, stats: np.ndarray | None = None) -> str:
    """A hash of the sources in order (path, bytes, modification time) and the size: a cache
    built from other files, or from the same files changed since, is not reused."""
    stats = source_stats(paths) if stats is None else stats
    return hashlib.sha256((_layout(paths, size) + np.ascontiguousarray(stats).tobytes().hex()).encode()).hexdigest()


def decoded_pixels(path: str | Path, size: int) -> np.ndarray:
    """One cache row: the PIL path's un-augmented training pixels, size x size x 3 uint8."""
    return np.asarray(square_resize(load_rgb(path), size), dtype=np.uint8)


def open_decoded_cache(folder: str | Path, fingerprint: str) -> DecodedCache | None:
    """The finished cache in ``folder`` if it was built from these sources, else None."""
    folder = Path(folder)
    if not (folder / META).is_file() or not (folder / PIXELS).is_file():
        return None
    meta = read_json(folder / META)
    if meta.get("version") != VERSION or meta.get("fingerprint") != fingerprint:
        return None
    pixels = np.load(folder / PIXELS, mmap_mode="r")
    if pixels.shape != (meta["count"], meta["size"], meta["size"], 3) or pixels.dtype != np.uint8:
        return None
    return DecodedCache(folder, int(meta["size"]), int(meta["count"]))


def ensure_decoded_cache(
    paths: Sequence[str | Path], folder: str | Path, size: int, *, workers: int = 4, progress: bool = False,
    wait_seconds: float = 7 * 24 * 3600.0,
) -> DecodedCache:
    """The cache of ``paths`` at ``size`` in ``folder``: opened if it is there, else built (or
    its interrupted build resumed). Processes sharing the folder take turns on its lock; the
    first builds, the others then open what it built."""
    if size < 1 or not paths:
        raise ValueError(f"a decoded cache needs images and a size >= 1, got {len(paths)} images at {size} px")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / LOCK, "building the decoded image cache", wait_seconds, other="another training process"):
        stats = source_stats(paths)
        cache = open_decoded_cache(folder, sources_fingerprint(paths, size, stats))
        if cache is not None:
            log.info("decoded image cache %s: %d images at %d px", folder, cache.count, size)
            return cache
        return _build(paths, folder, size, stats, workers, progress)


def _start_or_resume(folder: Path, paths: Sequence[str | Path], size: int, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The partial pixel file and its filled-rows mask: resumed if an unfinished build of the
    same paths at the same size is there (rows whose file changed since are to do again),
    else new (anything else in the folder is removed first)."""
    count, layout = len(paths), _layout(paths, size)
    building = read_json(folder / BUILDING) if (folder / BUILDING).is_file() else {}
    parts = [folder / name for name in (PARTIAL, FILLED, SOURCES)]
    if building.get("layout") == layout and all(part.is_file() for part in parts):
        pixels = np.lib.format.open_memmap(folder / PARTIAL, mode="r+")
        filled, started = np.load(folder / FILLED), np.load(folder / SOURCES)
        if pixels.shape == (count, size, size, 3) and filled.shape == (count,) and started.shape == stats.shape:
            changed = (started != stats).any(axis=1)
            filled &= ~changed
            if changed.any():  # the mask first: a crash in between leaves those rows to do, not stale
                _save_array(folder / FILLED, filled)
                _save_array(folder / SOURCES, stats)
            log.info("resuming the decoded image cache %s: %d of %d images done (%d sources changed)",
                     folder, int(filled.sum()), count, int(changed.sum()))
            return pixels, filled
        del pixels
    for name in (META, PIXELS, INDEX, PARTIAL, FILLED, SOURCES, BUILDING):
        (folder / name).unlink(missing_ok=True)
    needed = count * size * size * 3
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InputError(
            f"the decoded image cache of {count:,} images at {size} px needs {_bytes(needed)} in {folder}, "
            f"{_bytes(free)} are free: free space, point train.<dataset>.decoded_cache_dir at a larger "
            "disk, or use data_path: jpeg"
        )
    write_json(folder / BUILDING, {"version": VERSION, "layout": layout, "count": count, "size": size})
    _save_array(folder / SOURCES, stats)
    pixels = np.lib.format.open_memmap(folder / PARTIAL, mode="w+", dtype=np.uint8, shape=(count, size, size, 3))
    return pixels, np.zeros(count, dtype=bool)


def _bytes(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def _save_array(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _decode_rows(paths: Sequence[str | Path], size: int, pixels: np.ndarray, filled: np.ndarray, todo: np.ndarray,
                 mask_path: Path, workers: int, bar: Any) -> None:
    """Decode rows ``todo`` into ``pixels`` chunk by chunk, saving ``filled`` after each."""

    def decode(row: int) -> None:  # PIL decodes and resizes without the GIL: threads scale
        pixels[row] = decoded_pixels(paths[row], size)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(todo), CHUNK):
            rows = todo[start : start + CHUNK]
            try:
                list(pool.map(decode, rows))
            except ImageDecodeError as error:
                raise ImageDecodeError(f"building the decoded image cache: {error}; fix or remove the image "
                                       "(the build resumes from where it stopped)") from error
            pixels.flush()  # the rows are on disk before the mask says so
            filled[rows] = True
            _save_array(mask_path, filled)
            if bar is not None:
                bar.update(len(rows))
            elif (start // CHUNK) % max(1, len(todo) // CHUNK // 10) == 0:  # about 10 log lines without a bar
                log.info("decoded %d of %d images", int(filled.sum()), len(filled))


def _build(paths: Sequence[str | Path], folder: Path, size: int, stats: np.ndarray, workers: int,
           progress: bool) -> DecodedCache:
    count = len(paths)
    pixels, filled = _start_or_resume(folder, paths, size, stats)
    todo = np.flatnonzero(~filled)
    log.info("decoding %d images into %s (%d x %d px, %s)", len(todo), folder, size, size,
             _bytes(count * size * size * 3))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, initial=count - len(todo), desc="decoding images", unit="img")

    try:
        _decode_rows(paths, size, pixels, filled, todo, folder / FILLED, workers, bar)
    finally:
        if bar is not None:
            bar.close()
    pixels.flush()
    del pixels
    with open(folder / PARTIAL, "rb") as handle:
        os.fsync(handle.fileno())
    write_parquet(folder / INDEX, pa.table({"row": np.arange(count), "path": [str(p) for p in paths]}))
    os.replace(folder / PARTIAL, folder / PIXELS)
    fingerprint = sources_fingerprint(paths, size, stats)
    write_json(folder / META, {"version": VERSION, "fingerprint": fingerprint, "count": count, "size": size})
    for name in (FILLED, SOURCES, BUILDING):
        (folder / name).unlink(missing_ok=True)
    return DecodedCache(folder, size, count)
