"""The comparison table of a run against the published results, and the chance levels."""

from __future__ import annotations

import numpy as np
import pytest

from sdl.data.split import TagSplit
from sdl.eval import references as refs
from sdl.eval import reports
from sdl.eval.metrics import precision_recall_f1_at_k
from tests.helpers.results import eval_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_comparison_table_for_a_dataset_without_published_numbers(references: refs.References) -> None:
    results = eval_json(47.0, 37.4, ks=(1, 2))
    chance = {"zsl": {"precision@1": 40.0}, "gzsl": {}}
    table = reports.comparison_table(results, references.for_dataset("embedded"), chance)
    assert list(table.columns) == ["setting", "metric", "ours", "chance"]
    assert len(table) == 2 * 7
    first = table.iloc[0]
    assert (first["setting"], first["metric"], first["ours"], first["chance"]) == ("ZSL", "map", 47.0, 1.2)
    markdown = reports.table_markdown(table, "embedded", [])
    assert "| ZSL | map | 47.0 | 1.2 |" in markdown and "ours and chance only" in markdown
    page = reports.table_html(table, "embedded <test>", [])
    assert "<table>" in page and "&lt;test&gt;" in page


def test_comparison_table_against_the_papers(references: refs.References) -> None:
    published = references.for_dataset("nus_wide")
    table = reports.comparison_table(eval_json(20.0, 10.0), published)
    row = table[(table["setting"] == "ZSL") & (table["metric"] == "map")].iloc[0]
    assert row["sdl"] == 25.9 and row["Δ sdl"] == pytest.approx(-5.9) and row["epsilon"] == 33.2
    markdown = reports.table_markdown(table, "nus_wide", published, references.papers)
    assert "| ZSL | map | 20.0 | 1.2 | 25.9 | -5.9 |" in markdown
    assert "Semantic Diversity Learning" in markdown and "Table 1" in markdown


def test_chance_at_k_is_the_expected_value_of_random_rankings() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 6)) < 0.3).astype(np.float32)
    targets[0] = 0  # an image without positives: dropped under the "sdl" protocol
    columns = np.arange(6)
    expected = reports.chance_at_k(targets, columns, [1, 3], protocol="sdl")
    draws = np.array([precision_recall_f1_at_k(rng.random(targets.shape), targets, 3)[:2] for _ in range(3000)])
    assert draws[:, 0].mean() == pytest.approx(expected["precision@3"], abs=0.6)
    assert draws[:, 1].mean() == pytest.approx(expected["recall@3"], abs=0.6)
    assert expected["recall@3"] == pytest.approx(50.0)


def test_label_density_beside_what_the_papers_imply(references: refs.References) -> None:
    published = references.for_dataset("nus_wide")
    implied = reports.published_label_density(published)
    # SDL Table 1: 3 * 24.2 / 41.3 and 3 * 27.7 / 13.9; LESA (same table): 3 * 25.7 / 41.1, 3 * 23.6 / 10.4
    assert implied["sdl"]["zsl"][0] == pytest.approx(1.758, abs=1e-3) and implied["sdl"]["zsl"][1] == "3·24.2/41.3"
    assert implied["sdl"]["gzsl"][0] == pytest.approx(5.978, abs=1e-3)
    assert implied["lesa"]["zsl"][0] == pytest.approx(1.876, abs=1e-3)
    assert implied["lesa"]["gzsl"][0] == pytest.approx(6.808, abs=1e-3)
    assert "sdl_resnet50" not in implied  # F1 only: no density to infer
    coco = reports.published_label_density(references.for_dataset("coco"))
    assert coco["sdl"]["zsl"][0] == pytest.approx(3 * 26.3 / 65.3)

    results = {**eval_json(20.0, 10.0), "labels_per_image": {"zsl": 1.8123, "gzsl": 6.5}}
    table = reports.label_density_table(results, published)
    assert list(table.columns[:2]) == ["setting", "ours"] and "sdl" in table and "lesa" in table
    zsl = table[table["setting"] == "ZSL"].iloc[0]
    assert zsl["ours"] == "1.81" and zsl["sdl"] == "1.76 (3·24.2/41.3)" and zsl["lesa"].startswith("1.88")
    comparison = reports.compare_with_published("nus_wide", results, {}, refs.DEFAULT_REFERENCES)
    assert "## Label density: positives per evaluated test image" in comparison.markdown
    assert "| ZSL | 1.81 | 1.76 (3·24.2/41.3) |" in comparison.markdown
    assert "Label density" in comparison.html and "1.76 (3·24.2/41.3)" in comparison.html
    plain = reports.compare_with_published("nus_wide", eval_json(20.0, 10.0), {}, refs.DEFAULT_REFERENCES)
    assert "Label density" not in plain.markdown  # an older eval.json without the density


def test_chance_at_k_under_open_images_and_per_setting_images() -> None:
    targets = np.array([[1, -1, 0], [0, -1, -1], [0, 1, 1], [-1, 0, 1]], dtype=np.int8)
    # image 1 has no positive: dropped; the others hold 1, 2, 1 positives of 3 tags
    got = reports.chance_at_k(targets, np.arange(3), [1], protocol="open_images")
    assert got["precision@1"] == pytest.approx(100 * (4 / 3) / 3) and got["recall@1"] == pytest.approx(100 / 3)
    tags = TagSplit(seen=["a", "b"], unseen=["c"])
    levels = reports.chance_levels(targets, tags, [1], "sdl", {"zsl": np.array([False, False, True, True])})
    assert levels["zsl"]["precision@1"] == pytest.approx(100.0)  # images 2 and 3 both show the unseen tag
    assert levels["gzsl"] == reports.chance_at_k(targets, np.arange(3), [1], "sdl")
