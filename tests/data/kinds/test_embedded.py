"""Tests of the embedded Animal-MNIST mosaics (sdl.data.kinds.embedded) and sdl.safety.safe_pickle."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from sdl.data.kinds.embedded import (
    ANIMAL_MNIST_CLASSES,
    SILHOUETTE_SIZE,
    EmbeddedOptions,
    build_embedded,
    load_animal_mnist,
    plan_mosaics,
)
from sdl.safety.safe_pickle import UnsafePickleError, safe_load, safe_loads

NUM_IMAGES = 60


@pytest.fixture(scope="module")
def animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    return load_animal_mnist()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("embedded")
    spec = EmbeddedOptions(num_images=NUM_IMAGES, seed=7)
    return out, spec, build_embedded(out, spec)


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "images").glob("*.png"))}


def _contains(canvas: np.ndarray, patch: np.ndarray) -> bool:
    """True if ``patch`` (or its mirror image) appears verbatim somewhere in ``canvas``."""
    windows = sliding_window_view(canvas, patch.shape)
    return any(bool((windows == p).all(axis=(2, 3)).any()) for p in (patch, patch[:, ::-1]))


# --------------------------------------------------------------------------- Animal-MNIST


def test_animal_mnist_has_ten_balanced_classes(animal_mnist):
    images, labels = animal_mnist
    assert images.shape == (10_000, SILHOUETTE_SIZE, SILHOUETTE_SIZE)
    assert images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    assert len(ANIMAL_MNIST_CLASSES) == 10


# --------------------------------------------------------------------------- builder


def test_manifest_rows_and_files(built):
    out, spec, frame = built
    assert list(frame["image_id"]) == [f"emb-{i:06d}" for i in range(NUM_IMAGES)]
    assert list(frame.columns) == ["image_id", "path", "tags"]
    for path in frame["path"]:
        image = Image.open(out / path)
        assert image.mode == "L"
        assert image.size == (2 * spec.cell_size, 2 * spec.cell_size)
    assert len(list((out / "images").iterdir())) == NUM_IMAGES  # no temporary files left


def test_tags_are_the_animals_drawn(built, animal_mnist):
    """Each tag's silhouette is in the picture (found by template search), and nothing else is."""
    out, spec, frame = built
    images, labels = animal_mnist
    plans = plan_mosaics(labels, spec)
    assert len(plans) == NUM_IMAGES
    for plan, (path, tags) in zip(plans, zip(frame["path"], frame["tags"], strict=True), strict=True):
        expected = sorted(ANIMAL_MNIST_CLASSES[int(labels[i])] for i in plan)
        assert tags == expected
        canvas = np.asarray(Image.open(out / path))
        for index in plan:
            assert _contains(canvas, images[index]), f"silhouette {index} not drawn in {path}"
        # Every lit pixel belongs to one of the planned silhouettes: blank out their boxes.
        remaining = canvas.copy()
        for index in plan:
            windows = sliding_window_view(remaining, images[index].shape)
            for patch in (images[index], images[index][:, ::-1]):
                hits = np.argwhere((windows == patch).all(axis=(2, 3)))
                if len(hits):
                    top, left = hits[0]
                    remaining[top : top + SILHOUETTE_SIZE, left : left + SILHOUETTE_SIZE] = 0
                    break
        assert remaining.max() == 0, f"{path} shows more than its tagged animals"


def test_each_image_has_one_to_max_distinct_tags(built):
    _, spec, frame = built
    counts = [len(t) for t in frame["tags"]]
    assert all(len(set(t)) == len(t) for t in frame["tags"])
    assert min(counts) >= 1 and max(counts) <= spec.max_objects
    assert len(set(counts)) > 1  # 60 draws of 1..4 objects are not all the same size
    assert all(set(t) <= set(ANIMAL_MNIST_CLASSES) for t in frame["tags"])


def test_no_silhouette_used_twice(animal_mnist):
    _, labels = animal_mnist
    plans = plan_mosaics(labels, EmbeddedOptions(num_images=2500, max_objects=4, seed=3))
    used = [i for plan in plans for i in plan]
    assert len(used) == len(set(used))
    assert all(len({int(labels[i]) for i in plan}) == len(plan) for plan in plans)


def test_plan_runs_out_of_silhouettes(animal_mnist):
    _, labels = animal_mnist
    small = labels[:40]  # the first silhouettes are all of one class
    with pytest.raises(ValueError, match="too few silhouettes"):
        plan_mosaics(small, EmbeddedOptions(num_images=41, max_objects=1))


def test_same_seed_same_bytes_other_seed_differs(built, tmp_path):
    out, spec, frame = built
    again = build_embedded(tmp_path / "same", spec)
    assert again.equals(frame)
    assert _file_bytes(tmp_path / "same") == _file_bytes(out)
    other = build_embedded(tmp_path / "other", EmbeddedOptions(num_images=NUM_IMAGES, seed=spec.seed + 1))
    assert list(other["tags"]) != list(frame["tags"])
    other_bytes, ours = _file_bytes(tmp_path / "other"), _file_bytes(out)
    assert sum(other_bytes[n] == ours[n] for n in ours) < NUM_IMAGES // 10


def test_resume_rewrites_only_missing_files(built, tmp_path):
    out, spec, frame = built
    folder = tmp_path / "resume"
    build_embedded(folder, spec)
    reference = _file_bytes(folder)
    files = sorted((folder / "images").glob("*.png"))
    deleted = {files[i].name for i in (0, 17, 59)}
    for name in deleted:
        (folder / "images" / name).unlink()
    kept_mtimes = {p.name: p.stat().st_mtime_ns for p in files if p.name not in deleted}
    rows = build_embedded(folder, spec)
    assert rows.equals(frame)
    assert _file_bytes(folder) == reference
    after = {p.name: p.stat().st_mtime_ns for p in (folder / "images").glob("*.png")}
    assert {n: after[n] for n in kept_mtimes} == kept_mtimes
    assert set(after) == set(reference)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (EmbeddedOptions(num_images=2, max_objects=5), "max_objects"),
        (EmbeddedOptions(num_images=2, max_objects=0), "max_objects"),
        (EmbeddedOptions(num_images=2, cell_size=20), "cell_size"),
    ],
)
def test_invalid_specs(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        build_embedded(tmp_path, spec)


# --------------------------------------------------------------------------- safe_pickle


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_loads_numpy_arrays_every_protocol(protocol):
    arrays = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4),
        "u8": np.array([[0, 255], [7, 9]], dtype=np.uint8),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "scalar": np.float64(2.5),
        "dtype": np.dtype("int16"),
    }
    loaded = safe_loads(pickle.dumps(arrays, protocol=protocol))
    assert set(loaded) == set(arrays)
    for name, value in arrays.items():
        if isinstance(value, np.ndarray):
            assert loaded[name].dtype == value.dtype
            np.testing.assert_array_equal(loaded[name], value)
        else:
            assert loaded[name] == value


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_loads_plain_containers(protocol):
    data = {
        "list": [1, 2.5, "x", None, True],
        "tuple": (1, (2, 3)),
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"ab"),
        "nested": {"k": [{"v": -1}]},
    }
    assert safe_loads(pickle.dumps(data, protocol=protocol)) == data


@pytest.mark.parametrize("compress", [False, True])
def test_safe_load_refuses_code_execution(tmp_path, compress):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": [_RunsCommand(f"touch {marker}")]})
    assert b"system" in payload
    path = tmp_path / ("evil.pkl.gz" if compress else "evil.pkl")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(UnsafePickleError, match=r"\b(posix|os|nt)\.system\b") as caught:
        safe_load(path)
    assert str(path) in str(caught.value)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="system"):
        safe_loads(payload)
    assert not marker.exists()
    # The plain pickle module would have run it: the payload is a real exploit.
    pickle.loads(payload)
    assert marker.exists()


def test_safe_load_refuses_other_callables():
    for obj in (Path("/etc/passwd"), eval, __import__("collections").Counter("ab")):
        with pytest.raises(UnsafePickleError):
            safe_loads(pickle.dumps(obj))


def test_safe_load_gzip_and_plain_files(tmp_path):
    array = np.random.default_rng(0).integers(0, 255, size=(5, 28, 28), dtype=np.uint8)
    plain, packed = tmp_path / "a.pkl", tmp_path / "a.gz"
    plain.write_bytes(pickle.dumps(array))
    packed.write_bytes(gzip.compress(pickle.dumps(array, protocol=2)))
    np.testing.assert_array_equal(safe_load(plain), array)
    np.testing.assert_array_equal(safe_load(packed), array)


class _ObjectArrayFromBytes:
    """A forged protocol-5 array whose raw bytes would be read as Python object pointers."""

    def __reduce__(self):
        from numpy._core.numeric import _frombuffer

        return (_frombuffer, (b"\x00" * 8, np.dtype("O"), (1,), "C"))


def test_forged_object_array_from_bytes_is_refused():
    payload = pickle.dumps(_ObjectArrayFromBytes(), protocol=5)
    with pytest.raises((ValueError, pickle.UnpicklingError)):
        safe_loads(payload)
