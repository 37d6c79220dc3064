"""The comparison table of a run against the published results, and the chance levels."""

from __future__ import annotations

import numpy as np
import pytest

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
