"""Bad input gets a clear error or a counted, reported exclusion, never a silent change.

Through the pipeline's own paths: the image cache of the download stage, the validate stage's
report, the dataset loader, the embed and train stages reading word vectors, and every
stage's params check. (Unit-level cases live in tests/data/test_images.py,
tests/test_validation.py, tests/data/test_split.py, tests/test_wordvecs.py and
tests/test_config.py.)
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from sdl.config.typed import ParamsError
from sdl.data.dataset import TaggedImageDataset
from sdl.data.image_cache import cache_images
from sdl.data.images import ImageDecodeError, load_rgb
from sdl.data.kinds.embedded import ANIMAL_MNIST_CLASSES
from sdl.data.manifest import read_manifest
from sdl.data.validation import ValidateParams, validate_dataset
from tests.helpers.stages import (
    REPO_ROOT,
    D,
    copy_built,
    make_workdir,
    option,
    run_stage,
    stage_argv,
    variant,
)

# --------------------------------------------------------------------------- images


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's
    header: Pillow must refuse it from the header, before allocating anything)."""
    import io

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def _image_zoo(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Decodable images in every awkward format, and undecodable files of every kind."""
    folder.mkdir(parents=True)
    good: dict[str, Path] = {}

    def save(name: str, image: Image.Image, fmt: str, **kwargs: Any) -> None:
        path = folder / name
        image.save(path, format=fmt, **kwargs)
        good[path.stem] = path

    rng = np.random.default_rng(0)
    save("rgb.jpg", Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)), "JPEG")
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 30))
    save("alpha.png", rgba, "PNG")
    save("cmyk.jpg", Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")
    save("grey16.png", Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)), "PNG")
    save("grey.png", Image.new("L", (40, 30), 128), "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    save("rotated.jpg", Image.new("RGB", (40, 30), (0, 128, 0)), "JPEG", exif=exif)

    bad: dict[str, Path] = {}
    whole = (folder / "rgb.jpg").read_bytes()
    for name, payload in {
        "truncated.jpg": whole[: len(whole) // 3],
        "html.jpg": b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>",
        "empty.jpg": b"",
        "bomb.png": _png_claiming(100_000, 100_000),
    }.items():
        (folder / name).write_bytes(payload)
        bad[Path(name).stem] = folder / name
    bad["missing"] = folder / "missing.jpg"  # listed in the manifest, not on disk
    return good, bad


def test_image_cache_counts_and_excludes_every_undecodable_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = _image_zoo(tmp_path / "raw")
    rows = [{"image_id": key, "path": f"raw/{path.name}", "tags": ["cat"]} for key, path in {**good, **bad}.items()]
    manifest = pd.DataFrame(rows)
    with caplog.at_level(logging.WARNING, logger="sdl.data.image_cache"):
        cached, report = cache_images(manifest, tmp_path / "manifest.parquet", tmp_path / "cache", 16, workers=2)
    assert all(path.name in caplog.text for path in bad.values())  # the log names every exclusion

    assert report["failed"] == len(bad) and report["cached"] == len(good)
    reasons = dict(report["failures"])
    assert set(reasons) == set(bad)  # every exclusion is counted and named ...
    for key, path in bad.items():
        assert path.name in reasons[key]  # ... with the file and why
    assert "too large" in reasons["bomb"] and "not found" in reasons["missing"]
    assert sorted(cached["image_id"]) == sorted(good)  # the manifest lists only what decodes
    for path in cached["path"]:
        image = Image.open(tmp_path / path)
        assert image.mode == "RGB" and min(image.size) <= 30
    rotated = Image.open(tmp_path / cached.set_index("image_id").loc["rotated", "path"])
    assert rotated.size[1] > rotated.size[0]  # EXIF orientation applied: 40x30 shown as 30x40
    alpha = np.asarray(load_rgb(good["alpha"]))
    assert tuple(alpha[15, 35]) == (255, 255, 255)  # transparent: composited on white, not black


def test_dataset_loader_names_the_undecodable_file(tmp_path: Path) -> None:
    _, bad = _image_zoo(tmp_path / "raw")
    dataset = TaggedImageDataset([bad["html"], bad["truncated"]], None, 32, (0.5,) * 3, (0.5,) * 3)
    for index, path in enumerate(dataset.paths):
        with pytest.raises(ImageDecodeError, match=Path(path).name):
            dataset[index]


def _plant_html_image(root: Path) -> str:
    """An HTML error page saved where the embedded kind keeps its 4th image (an existing file
    is kept on a rerun, as a resumed download keeps what it has)."""
    _, argv = stage_argv("download")
    victim = Path(option(argv, "raw")) / "images" / "emb-000003.png"
    (root / victim).parent.mkdir(parents=True, exist_ok=True)
    (root / victim).write_bytes(b"<html><body>404 Not Found</body></html>")
    return victim.name


def test_download_stage_excludes_and_counts_undecodable_images(tmp_path: Path, tiny_params: dict[str, Any]) -> None:
    params = variant(tiny_params, "download.embedded.cache_short_side", 32)
    root = make_workdir(tmp_path / "work", params)
    _plant_html_image(root)
    assert run_stage("download", root) == 0
    _, argv = stage_argv("download")
    report = json.loads((root / option(argv, "report")).read_text())
    assert report["image_cache"]["failed"] == 1 and report["manifest"]["images"] == 149
    manifest = read_manifest(root / option(argv, "manifest"))
    assert "emb-000003" not in set(manifest["image_id"]) and len(manifest) == 149


def test_validate_stage_reports_an_undecodable_image(tmp_path: Path, tiny_params: dict[str, Any]) -> None:
    root = make_workdir(tmp_path / "work", tiny_params)  # no image cache: the raw files are used
    name = _plant_html_image(root)
    assert run_stage("download", root) == 0
    assert run_stage("validate", root) == 1  # non-zero: `dvc repro` stops here
    _, argv = stage_argv("validate")
    folder = root / option(argv, "report")
    report = json.loads((folder / "report.json").read_text())
    assert not report["success"] and report["summary"]["undecodable"] == 1
    (row,) = [r for r in report["expectations"] if r["suite"] == "images" and not r["success"]]
    assert any(name in example for example in row["examples"])
    assert name in (folder / "report.md").read_text()


# --------------------------------------------------------------------------- labels and vocabulary


def test_vocabulary_and_label_faults_are_reported(built: Path) -> None:
    manifest = read_manifest(built / f"{D}/manifest.parquet")
    all_tags = list(ANIMAL_MNIST_CLASSES)
    manifest.at[0, "tags"] = ["cat", "cat"]  # a tag listed twice for one image
    manifest.at[1, "tags"] = all_tags  # an image with every tag (above max_tags_per_image)
    manifest.at[2, "tags"] = []  # an image with no tag
    manifest.at[3, "tags"] = ["unicorn"]  # a tag outside the vocabulary
    manifest.at[4, "tags"] = ["polar bear"]
    vocabulary = [*all_tags, "polar bear", "Polar  bear "]  # the same word, by case and spaces
    tags = pd.DataFrame({"tag": vocabulary, "role": [""] * len(vocabulary)})
    report = validate_dataset(
        manifest, built / f"{D}/manifest.parquet", tags,
        ValidateParams(min_tags_per_image=1, max_tags_per_image=4, min_images_per_tag=1, max_tag_prevalence=1.0),
    )
    assert not report.success
    failed = {(r["suite"], r["expectation"], r["column"]): r for r in report.rows if not r["success"]}
    ids = manifest["image_id"].tolist()
    duplicate = failed[("labels", "expect_compound_columns_to_be_unique", None)]
    assert any(ids[0] in str(x) and "cat" in str(x) for x in duplicate["examples"])
    counts = failed[("manifest", "expect_column_values_to_be_between", "num_tags")]
    # the examples name the images at fault (GX's COMPLETE result, image_id as the index)
    assert counts["unexpected_count"] == 2 and set(counts["examples"]) == {f"{ids[1]} ({len(all_tags)})", f"{ids[2]} (0)"}
    assert failed[("labels", "expect_column_values_to_be_in_set", "tag")]["examples"] == [f"{ids[3]} (unicorn)"]
    same_word = failed[("vocabulary", "expect_column_values_to_be_unique", "tag_key")]
    assert same_word["unexpected_count"] == 2
    assert set(same_word["examples"]) == {"polar bear (polar bear)", "Polar  bear  (polar bear)"}
    markdown = report.to_markdown("faulty")
    assert "unicorn" in markdown and "polar bear" in markdown


def _embed_paths() -> dict[str, str]:
    _, argv = stage_argv("embed")
    paths = {name: option(argv, name) for name in ("split", "cache", "out")}
    paths["cache"] = paths["cache"] or paths["out"]  # the incremental cache (its own file, or the output)
    return paths


def test_embed_stage_names_a_tag_without_a_word_vector(built: Path, tmp_path: Path) -> None:
    root = copy_built(built, tmp_path / "work")
    paths = _embed_paths()
    split_tags = root / paths["split"] / "tags.json"
    tags = json.loads(split_tags.read_text())
    tags["unseen"].append("qwzxvbkj")  # no such word in GloVe
    split_tags.write_text(json.dumps(tags))
    before = {name: (root / paths[name]).read_bytes() for name in ("cache", "out")}
    with pytest.raises(Exception, match="qwzxvbkj") as caught:
        run_stage("embed", root)
    assert "word vector" in str(caught.value) or "vector" in str(caught.value)
    for name, data in before.items():
        assert (root / paths[name]).read_bytes() == data  # the cache and the output are untouched


def _poison(path: Path, tag: str, value: float) -> None:
    """Set one component of ``tag``'s cached vector to ``value`` (NaN, inf), keeping the schema."""
    table = pq.read_table(path)
    frame = table.to_pandas()
    row = frame.index[frame["tag"] == tag][0]
    vector = np.array(frame.at[row, "vector"], dtype=np.float32)
    vector[0] = value
    frame.at[row, "vector"] = vector
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_cached_vector_is_rejected_by_embed(built: Path, tmp_path: Path, value: float) -> None:
    root = copy_built(built, tmp_path / "work")
    cache = root / _embed_paths()["cache"]
    _poison(cache, "cat", value)
    with pytest.raises(Exception, match="finite") as caught:
        run_stage("embed", root)
    assert "'cat'" in str(caught.value) and cache.name in str(caught.value)


def test_a_nan_word_vector_stops_training_before_any_output(built: Path, tmp_path: Path) -> None:
    root = copy_built(built, tmp_path / "work")
    _, argv = stage_argv("train")
    _poison(root / option(argv, "wordvecs"), "cat", float("nan"))
    with pytest.raises(Exception, match="finite"):
        run_stage("train", root)
    for name in ("model", "state", "metrics", "history"):
        assert not (root / option(argv, name)).exists(), name


# --------------------------------------------------------------------------- params

BAD_PARAMS = {
    "wrong type": ("train.embedded.num_rows", "seven", "train.embedded.num_rows"),
    "unknown key": ("split.embedded.images.shuffle", True, "split.embedded.images"),
    "M = 0": ("train.embedded.num_rows", 0, "num_rows must be >= 1"),
    "k above the unseen tags": ("evaluate.embedded.ks", [1, 5], "evaluate.embedded.ks"),
    "unknown download option": ("download.embedded.options.mirror", "http://example.org", "download.embedded.options"),
}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_every_stage_rejects_bad_params_before_writing_anything(
    case: str, tmp_path: Path, tiny_params: dict[str, Any]
) -> None:
    key, value, named = BAD_PARAMS[case]
    root = make_workdir(tmp_path / "work", variant(tiny_params, key, value))
    before = _files(root)
    stages = list(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])
    assert len(stages) >= 7
    for stage in stages:
        with pytest.raises(ParamsError) as caught:
            run_stage(stage, root)
        assert named in str(caught.value) and key.split(".")[0] in str(caught.value), (stage, str(caught.value))
        assert _files(root) == before, f"{stage} wrote {sorted(_files(root) - before)} before failing"
    shutil.rmtree(root)


def test_split_reports_the_images_it_leaves_out(built: Path) -> None:
    _, argv = stage_argv("split")
    report = json.loads((built / option(argv, "out") / "report.json").read_text())
    images = pd.read_parquet(built / option(argv, "out") / "images.parquet")
    manifest = read_manifest(built / option(argv, "manifest"))
    # train_seen_only: training images showing an unseen animal are left out, and counted
    assert report["summary"]["left_out_images"] == len(manifest) - len(images) > 0
