"""Tests of the Great Expectations data validation (sdl.data.validation) on a real embedded dataset."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from sdl.data.kinds.embedded import (
    ANIMAL_MNIST_CLASSES,
    EmbeddedOptions,
    build_embedded,
)
from sdl.data.manifest import read_manifest, write_manifest
from sdl.data.validation import ValidateParams, build_frames, validate_dataset

NUM_IMAGES = 40


def _tag_table(tags: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"tag": tags, "role": ["unseen" if t in ("cat", "zebra") else "seen" for t in tags]})


def _row(report, suite: str, expectation: str, column: str | None) -> dict:
    matches = [r for r in report.rows if (r["suite"], r["expectation"], r["column"]) == (suite, expectation, column)]
    assert len(matches) == 1, (suite, expectation, column)
    return matches[0]


def _markdown_line(markdown: str, suite: str, expectation: str, column: str) -> str:
    lines = [line for line in markdown.splitlines() if line.startswith(f"| {suite} | {expectation} | {column} |")]
    assert len(lines) == 1, (suite, expectation, column)
    return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    frame = build_embedded(folder, EmbeddedOptions(num_images=NUM_IMAGES, seed=11))
    write_manifest(folder / "manifest.parquet", frame)
    return folder


def test_clean_dataset_passes(dataset):
    manifest = read_manifest(dataset / "manifest.parquet")
    report = validate_dataset(
        manifest, dataset / "manifest.parquet", _tag_table(list(ANIMAL_MNIST_CLASSES)),
        ValidateParams(min_tags_per_image=1, max_tags_per_image=4, min_images_per_tag=1, max_tag_prevalence=1.0),
    )
    assert report.success, report.to_markdown("clean")
    assert all(r["success"] and r["unexpected_count"] == 0 for r in report.rows)
    assert {r["suite"] for r in report.rows} == {"manifest", "labels", "vocabulary", "images"}
    assert report.summary["images"] == NUM_IMAGES
    assert report.summary["labels"] == sum(len(t) for t in manifest["tags"])
    assert report.summary["decoded"] == NUM_IMAGES and report.summary["undecodable"] == 0
    markdown = report.to_markdown("embedded")
    assert markdown.startswith("# Validation of embedded: PASSED")
    assert "**NO**" not in markdown
    json.dumps(report.to_dict())


def test_faults_are_reported_per_expectation(dataset, tmp_path):
    folder = tmp_path / "faulty"
    shutil.copytree(dataset, folder)
    manifest = read_manifest(folder / "manifest.parquet")
    ids = manifest["image_id"].tolist()

    manifest.loc[5, "image_id"] = ids[4]  # duplicate id
    (folder / manifest.loc[10, "path"]).unlink()  # deleted file
    truncated = folder / manifest.loc[12, "path"]
    truncated.write_bytes(truncated.read_bytes()[:60])  # corrupt file
    manifest.at[15, "tags"] = [*manifest.loc[15, "tags"], "unicorn"]  # tag outside the vocabulary
    manifest.at[20, "tags"] = []  # an image with no tag
    manifest.at[25, "tags"] = ["Cat"]  # used, but the same word as "cat"
    vocabulary = [*ANIMAL_MNIST_CLASSES, "Cat"]

    counts = Counter(t for tags in manifest["tags"] for t in tags)
    prevalence = {t: counts[t] / len(manifest) for t in vocabulary}
    top, second = sorted(set(prevalence.values()), reverse=True)[:2]
    limit = (top + second) / 2
    too_common = sorted(t for t, p in prevalence.items() if p > limit)
    assert too_common

    docs = tmp_path / "data_docs"
    report = validate_dataset(
        manifest, folder / "manifest.parquet", _tag_table(vocabulary),
        ValidateParams(min_tags_per_image=1, max_tags_per_image=4, min_images_per_tag=1, max_tag_prevalence=limit),
        docs=docs,
    )
    assert not report.success
    expected_failures = {
        ("manifest", "expect_column_values_to_be_unique", "image_id"): (2, [ids[4]]),
        ("manifest", "expect_column_values_to_be_in_set", "file_exists"): (1, [ids[10]]),
        ("manifest", "expect_column_values_to_be_between", "num_tags"): (1, [0]),
        ("labels", "expect_column_values_to_be_in_set", "tag"): (1, ["unicorn"]),
        ("vocabulary", "expect_column_values_to_be_unique", "tag_key"): (2, ["cat"]),
        ("vocabulary", "expect_column_values_to_be_between", "prevalence"): (len(too_common), too_common),
        ("images", "expect_column_values_to_be_in_set", "decodable"): (1, [truncated.name]),
    }
    markdown = report.to_markdown("faulty")
    assert markdown.startswith("# Validation of faulty: FAILED")
    for (suite, expectation, column), (count, needles) in expected_failures.items():
        row = _row(report, suite, expectation, column)
        assert not row["success"], (suite, expectation, column)
        assert row["unexpected_count"] == count, (suite, expectation, column, row)
        line = _markdown_line(markdown, suite, expectation, column)
        assert f"| **NO** | {count} |" in line
        for needle in needles:
            assert any(str(needle) in str(example) for example in row["examples"]), (needle, row["examples"])
            assert str(needle) in line
    # GX's COMPLETE results name the rows at fault by their id column
    assert _row(report, "manifest", "expect_column_values_to_be_in_set", "file_exists")["examples"] == [ids[10]]
    assert _row(report, "manifest", "expect_column_values_to_be_unique", "image_id")["examples"] == [ids[4]]
    assert _row(report, "manifest", "expect_column_values_to_be_between", "num_tags")["examples"] == [f"{ids[20]} (0)"]
    assert _row(report, "labels", "expect_column_values_to_be_in_set", "tag")["examples"] == [f"{ids[15]} (unicorn)"]
    decode = _row(report, "images", "expect_column_values_to_be_in_set", "decodable")["examples"]
    assert len(decode) == 1 and decode[0].startswith(f"{ids[12]}: ")
    # the Checkpoint's Data Docs: an index and a page per suite's validation, naming the failures
    assert (docs / "index.html").is_file()
    pages = {p.parent.parent.parent.name: p.read_text(encoding="utf-8") for p in docs.glob("validations/*/*/*/*.html")}
    assert set(pages) == {"manifest", "labels", "vocabulary", "images"}
    assert ids[10] in pages["manifest"] and "unicorn" in pages["labels"]
    prevalence_examples = _row(report, "vocabulary", "expect_column_values_to_be_between", "prevalence")["examples"]
    assert prevalence_examples == [f"{t} ({prevalence[t]:g})" for t in vocabulary if t in too_common]
    others = [r for r in report.rows if (r["suite"], r["expectation"], r["column"]) not in expected_failures]
    assert others and all(r["success"] for r in others), [r for r in others if not r["success"]]
    assert report.summary["missing_files"] == 1
    assert report.summary["decoded"] == NUM_IMAGES - 1 and report.summary["undecodable"] == 1
    assert report.summary["failed_expectations"] == len(expected_failures)
    json.dumps(report.to_dict())


def test_decode_sample_is_seeded(dataset):
    manifest = read_manifest(dataset / "manifest.parquet")
    tags = _tag_table(list(ANIMAL_MNIST_CLASSES))
    first = build_frames(manifest, dataset / "manifest.parquet", tags, ValidateParams(decode_sample=7, seed=1))
    again = build_frames(manifest, dataset / "manifest.parquet", tags, ValidateParams(decode_sample=7, seed=1))
    other = build_frames(manifest, dataset / "manifest.parquet", tags, ValidateParams(decode_sample=7, seed=2))
    assert len(first["images"]) == 7 and first["images"]["decodable"].all()
    assert first["images"]["path"].tolist() == again["images"]["path"].tolist()
    assert first["images"]["path"].tolist() != other["images"]["path"].tolist()
    assert set(first["images"]["path"]) <= {str((dataset / p).resolve()) for p in manifest["path"]}
    every = build_frames(manifest, dataset / "manifest.parquet", tags, ValidateParams(decode_sample=0))
    assert len(every["images"]) == NUM_IMAGES


def test_verified_negatives_are_checked_where_the_manifest_has_them(dataset):
    manifest = read_manifest(dataset / "manifest.parquet")
    classes = list(ANIMAL_MNIST_CLASSES)
    bounds = ValidateParams(min_tags_per_image=1, max_tags_per_image=4, min_images_per_tag=1, max_tag_prevalence=1.0,
                            decode_sample=2)
    manifest["negatives"] = [[c for c in classes if c not in tags][:1] for tags in manifest["tags"]]
    clean = validate_dataset(manifest, dataset / "manifest.parquet", _tag_table(classes), bounds)
    assert clean.success, clean.to_markdown("negatives")
    assert "negatives" in {r["suite"] for r in clean.rows}
    assert clean.summary["negatives"] == sum(len(n) for n in manifest["negatives"])

    manifest.at[0, "negatives"] = [manifest.at[0, "tags"][0]]  # a tag both positive and verified absent
    manifest.at[1, "negatives"] = ["unicorn"]  # not in the vocabulary
    faulty = validate_dataset(manifest, dataset / "manifest.parquet", _tag_table(classes), bounds)
    assert not faulty.success
    contradiction = _row(faulty, "negatives", "expect_column_values_to_be_in_set", "also_positive")
    assert not contradiction["success"] and contradiction["unexpected_count"] == 1
    unknown = _row(faulty, "negatives", "expect_column_values_to_be_in_set", "tag")
    assert not unknown["success"] and unknown["examples"] == [f"{manifest.at[1, 'image_id']} (unicorn)"]
