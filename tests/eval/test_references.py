"""The published references (references/published.yaml) and the comparison metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sdl.eval import references as refs
from sdl.mlops import tracking
from tests.helpers.results import eval_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_published_value_is_a_percentage_with_a_source(references: refs.References) -> None:
    assert references.version
    assert {"nus_wide", "open_images", "coco"} <= {r.dataset for r in references.results}
    count = 0
    for result in references.results:
        assert result.paper in references.papers and result.table.startswith("Table")
        for setting, values in result.metrics.items():
            assert setting in ("zsl", "gzsl")
            for metric, value in values.items():
                assert isinstance(value, float) and 0.0 <= value <= 100.0, (result.key, setting, metric)
                count += 1
    assert count >= 148


def test_sdl_headline_numbers(references: refs.References) -> None:
    sdl = references.get("sdl", "nus_wide")
    assert sdl.value("zsl", "map") == 25.9 and sdl.value("gzsl", "map") == 12.1
    assert sdl.value("zsl", "f1@3") == 30.5 and sdl.value("gzsl", "f1@5") == 21.0
    assert references.get("sdl", "NUS-WIDE") == sdl  # other spellings of the dataset
    assert references.get("sdl", "open_images").value("gzsl", "map") == 75.3
    assert references.get("sdl", "coco").value("gzsl", "f1@3") == 59.9
    assert references.get("sdl", "coco").value("zsl", "map") is None  # the COCO table has no mAP
    assert references.get("fast0tag_sdl", "nus_wide").value("zsl", "map") == 21.6
    assert references.get("biam", "nus_wide").value("zsl", "map") == 25.8
    assert references.get("lesa", "nus_wide").value("gzsl", "map") == 5.6
    assert references.get("epsilon", "open_images").value("zsl", "map") == 68.5


def test_published_f1_agrees_with_published_precision_and_recall(references: refs.References) -> None:
    """A transcription check: F1 = 2PR / (P + R) within the tables' rounding."""
    checked = 0
    for result in references.results:
        for setting, values in result.metrics.items():
            for metric, f1 in values.items():
                if not metric.startswith("f1@"):
                    continue
                k = metric.split("@")[1]
                p, r = values.get(f"precision@{k}"), values.get(f"recall@{k}")
                if p is None or r is None:
                    continue
                assert abs(2 * p * r / (p + r) - f1) <= 0.16, (result.dataset, result.key, setting, metric)
                checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"zsl": {"map": 123.0}}, "not a percentage"),
        ({"zsl": {"map": "25.9"}}, "expected a number"),
        ({"zsl": {"map": float("nan")}}, "not a percentage"),
        ({"zsl": {"mAP@3": 1.0}}, "unknown metric"),
        ({"zsl": {"map": 1.0}, "source": {"paper": "nope", "table": "Table 1"}}, "not listed"),
        ({"zsl": {"map": 1.0}, "colour": "red"}, "unknown key"),
    ],
)
def test_loader_rejects_bad_entries(tmp_path: Path, entry: dict[str, Any], message: str) -> None:

    result = {"key": "x", "method": "X", "dataset": "nus_wide", "source": {"paper": "p", "table": "Table 1"}, **entry}
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "papers": {"p": "A paper"}, "results": [result]}))
    with pytest.raises(refs.ReferencesError, match=message):
        refs.load_references(path)


def test_loader_rejects_a_duplicate_key_and_a_missing_version(tmp_path: Path) -> None:

    result = {"key": "x", "method": "X", "dataset": "coco", "source": {"paper": "p", "table": "Table 2"}, "zsl": {"f1@3": 1}}
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "papers": {"p": "A"}, "results": [result, result]}))
    with pytest.raises(refs.ReferencesError, match="duplicate"):
        refs.load_references(path)
    path.write_text(yaml.safe_dump({"papers": {"p": "A"}, "results": [result]}))
    with pytest.raises(refs.ReferencesError, match="version"):
        refs.load_references(path)


def test_comparison_metrics_name_and_sign(references: refs.References) -> None:
    published = references.for_dataset("nus_wide")
    metrics = refs.comparison_metrics(eval_json(20.0, 10.0), published)
    assert metrics["zsl.map.paper_sdl"] == 25.9
    assert metrics["zsl.map.delta_sdl"] == pytest.approx(20.0 - 25.9)
    assert metrics["gzsl.map.delta_sdl"] == pytest.approx(10.0 - 12.1)
    assert metrics["zsl.precision@3.paper_lesa"] == 25.7
    assert metrics["gzsl.f1@5.delta_epsilon"] == pytest.approx(24.0 - 22.5)
    assert "zsl.precision@3.paper_fast0tag_sdl" not in metrics  # that table has no P@3
    # MLflow names: no '@'
    assert tracking.metric_name("zsl.precision@3.delta_sdl") == "zsl.precision_at_3.delta_sdl"
    # other K than the paper's: only the mAPs are compared
    only_map = refs.comparison_metrics(eval_json(20.0, 10.0, ks=(1, 2)), published)
    assert {k.split(".")[1] for k in only_map} == {"map"}
    assert refs.comparison_metrics(eval_json(20.0, 10.0), references.for_dataset("embedded")) == {}
