"""The pre-decoded image cache (sdl.data.decoded_cache): the PIL path's pixels, built once,
atomically, resumably, by one process of several, and rebuilt when its sources change."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import sdl.data.decoded_cache as decoded_cache
from sdl.data.dataset import TaggedImageDataset
from sdl.data.decoded_cache import (
    FILLED,
    INDEX,
    META,
    PARTIAL,
    PIXELS,
    DecodedCache,
    ensure_decoded_cache,
)
from sdl.data.images import ImageDecodeError
from sdl.safety.errors import InputError
from tests.helpers.images import photo_like

SIZE = 24
REAL_DECODE = decoded_cache.decoded_pixels


def _images(folder: Path, count: int = 11) -> list[Path]:
    """JPEGs and PNGs of several sizes and aspects, a grey one, one with alpha, one rotated by EXIF."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = photo_like(i, 40 + 7 * i)[: 30 + 5 * i]  # not square, larger and smaller than SIZE
        image = Image.fromarray(pixels)
        if i % 4 == 1:
            path = folder / f"{i:02d}.png"
            (image.convert("LA") if i == 5 else image.convert("RGBA")).save(path)
        elif i == 2:
            path = folder / f"{i:02d}.jpg"
            exif = Image.Exif()
            exif[0x0112] = 6  # orientation: rotate 90
            image.save(path, quality=90, exif=exif)
        else:
            path = folder / f"{i:02d}.jpg"
            (image.convert("L") if i == 3 else image).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    return _images(tmp_path / "images")


def _pil_pixels(paths: list[Path]) -> np.ndarray:
    """The PIL path's un-augmented training pixels (TaggedImageDataset.load)."""
    dataset = TaggedImageDataset(paths, None, SIZE, (0, 0, 0), (1, 1, 1))
    return np.stack([np.asarray(dataset.load(i)) for i in range(len(paths))])


class _Counting:
    """decoded_pixels, counting its calls; raises on the ``fail_at``-th call (an interruption)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, path, size):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise ImageDecodeError(f"{path}: not a decodable image (simulated)")
        return REAL_DECODE(path, size)


def test_the_cache_holds_the_pil_paths_pixels(sources, tmp_path):
    cache = ensure_decoded_cache(sources, tmp_path / "cache", SIZE, workers=3)
    assert len(cache) == len(sources) and cache.pixels.shape == (len(sources), SIZE, SIZE, 3)
    np.testing.assert_array_equal(cache.pixels, _pil_pixels(sources))
    folder = tmp_path / "cache"
    assert {p.name for p in folder.iterdir()} == {PIXELS, INDEX, META, ".lock"}  # no partial files left
    index = pd.read_parquet(folder / INDEX)
    assert index["row"].tolist() == list(range(len(sources))) and index["path"].tolist() == [str(p) for p in sources]
    assert np.load(folder / PIXELS, mmap_mode="r").dtype == np.uint8  # a plain .npy


def test_a_finished_cache_is_opened_not_rebuilt(sources, tmp_path, monkeypatch):
    ensure_decoded_cache(sources, tmp_path / "cache", SIZE)
    counting = _Counting()
    monkeypatch.setattr(decoded_cache, "decoded_pixels", counting)
    again = ensure_decoded_cache(sources, tmp_path / "cache", SIZE)
    assert counting.calls == 0 and len(again) == len(sources)


@pytest.mark.parametrize("change", ["content", "order", "size"])
def test_other_sources_rebuild(sources, tmp_path, monkeypatch, change):
    ensure_decoded_cache(sources, tmp_path / "cache", SIZE)
    size, paths = SIZE, list(sources)
    if change == "content":
        Image.fromarray(photo_like(99, 50)).save(paths[4], quality=80)
    elif change == "order":
        paths = paths[::-1]
    else:
        size = SIZE + 4
    counting = _Counting()
    monkeypatch.setattr(decoded_cache, "decoded_pixels", counting)
    rebuilt = ensure_decoded_cache(paths, tmp_path / "cache", size)
    assert counting.calls == len(paths)
    dataset = TaggedImageDataset(paths, None, size, (0, 0, 0), (1, 1, 1))
    np.testing.assert_array_equal(rebuilt.pixels[4], np.asarray(dataset.load(4)))


def test_an_interrupted_build_resumes(sources, tmp_path, monkeypatch):
    """Killed after two chunks of 3: nothing looks finished, and the next build decodes only
    the rows not flushed, to the same pixels as a build in one go."""
    monkeypatch.setattr(decoded_cache, "CHUNK", 3)
    folder = tmp_path / "cache"
    monkeypatch.setattr(decoded_cache, "decoded_pixels", _Counting(fail_at=8))
    with pytest.raises(ImageDecodeError, match="building the decoded image cache: .*simulated.*resumes"):
        ensure_decoded_cache(sources, folder, SIZE, workers=1)
    assert not (folder / PIXELS).exists() and not (folder / META).exists()
    assert (folder / PARTIAL).exists() and np.load(folder / FILLED).sum() == 6
    counting = _Counting()
    monkeypatch.setattr(decoded_cache, "decoded_pixels", counting)
    cache = ensure_decoded_cache(sources, folder, SIZE, workers=2)
    assert counting.calls == len(sources) - 6
    np.testing.assert_array_equal(cache.pixels, _pil_pixels(sources))


def test_a_resumed_build_decodes_changed_files_again(sources, tmp_path, monkeypatch):
    """An image replaced after the build stopped (say, fixed after a decoding error) is
    decoded again even where its row was done."""
    monkeypatch.setattr(decoded_cache, "CHUNK", 3)
    monkeypatch.setattr(decoded_cache, "decoded_pixels", _Counting(fail_at=8))
    with pytest.raises(ImageDecodeError):
        ensure_decoded_cache(sources, tmp_path / "cache", SIZE, workers=1)
    Image.fromarray(photo_like(50, 60)).save(sources[1])  # row 1 was done: a PNG, rewritten
    counting = _Counting()
    monkeypatch.setattr(decoded_cache, "decoded_pixels", counting)
    cache = ensure_decoded_cache(sources, tmp_path / "cache", SIZE)
    assert counting.calls == len(sources) - 6 + 1
    np.testing.assert_array_equal(cache.pixels, _pil_pixels(sources))


def test_an_undecodable_image_is_named(sources, tmp_path):
    sources[3].write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=f"{sources[3].name}.*not a decodable image"):
        ensure_decoded_cache(sources, tmp_path / "cache", SIZE)
    sources[5].unlink()
    with pytest.raises(ImageDecodeError, match=f"{sources[5].name}: file not found"):
        ensure_decoded_cache(sources, tmp_path / "cache", SIZE)


def test_too_little_disk_is_refused_before_writing(sources, tmp_path, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(decoded_cache.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(InputError, match=r"needs 0.0 MiB .*, 0.0 MiB are free: .*decoded_cache_dir .* data_path: jpeg"):
        ensure_decoded_cache(sources, tmp_path / "cache", SIZE)
    assert not (tmp_path / "cache" / PARTIAL).exists()


def test_the_cache_travels_to_workers_without_its_pixels(sources, tmp_path):
    cache = ensure_decoded_cache(sources, tmp_path / "cache", SIZE)
    cache.pixels  # mapped in this process
    payload = pickle.dumps(cache)
    assert len(payload) < 1000  # a spawned loader worker maps the file itself
    copy = pickle.loads(payload)
    assert isinstance(copy, DecodedCache)
    np.testing.assert_array_equal(copy.pixels, cache.pixels)


def _build_in_child(paths: list[Path], folder: Path, calls: Path) -> None:
    counting = _Counting()
    decoded_cache.decoded_pixels = counting  # this child process only
    cache = ensure_decoded_cache(paths, folder, SIZE, workers=1)
    calls.write_text(f"{counting.calls} {int(cache.pixels.sum())}")


def test_processes_sharing_a_folder_build_it_once(sources, tmp_path):
    """Ranks of a multi-GPU run all ask for the cache: one builds, the others wait for its lock
    and open what it built."""
    context = multiprocessing.get_context("fork")
    folder = tmp_path / "cache"
    outputs = [tmp_path / f"calls-{i}.txt" for i in range(3)]
    children = [context.Process(target=_build_in_child, args=(sources, folder, out)) for out in outputs]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0, 0]
    results = [tuple(int(v) for v in out.read_text().split()) for out in outputs]
    assert sorted(calls for calls, _ in results) == [0, 0, len(sources)]
    assert len({total for _, total in results}) == 1
    assert int(_pil_pixels(sources).astype(np.int64).sum()) == results[0][1]
    assert os.listdir(folder)
