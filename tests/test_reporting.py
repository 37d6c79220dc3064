"""The reference table of published results, the comparison with a run, and the report plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdl import reporting, tracking
from sdl.metrics import precision_recall_f1_at_k

REFERENCES = Path(__file__).resolve().parent.parent / "references" / "published.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def references() -> reporting.References:
    return reporting.load_references(REFERENCES)


def test_every_published_value_is_a_percentage_with_a_source(references: reporting.References) -> None:
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


def test_sdl_headline_numbers(references: reporting.References) -> None:
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


def test_published_f1_agrees_with_published_precision_and_recall(references: reporting.References) -> None:
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
    import yaml

    result = {"key": "x", "method": "X", "dataset": "nus_wide", "source": {"paper": "p", "table": "Table 1"}, **entry}
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "papers": {"p": "A paper"}, "results": [result]}))
    with pytest.raises(reporting.ReferencesError, match=message):
        reporting.load_references(path)


def test_loader_rejects_a_duplicate_key_and_a_missing_version(tmp_path: Path) -> None:
    import yaml

    result = {"key": "x", "method": "X", "dataset": "coco", "source": {"paper": "p", "table": "Table 2"}, "zsl": {"f1@3": 1}}
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "papers": {"p": "A"}, "results": [result, result]}))
    with pytest.raises(reporting.ReferencesError, match="duplicate"):
        reporting.load_references(path)
    path.write_text(yaml.safe_dump({"papers": {"p": "A"}, "results": [result]}))
    with pytest.raises(reporting.ReferencesError, match="version"):
        reporting.load_references(path)


def eval_json(zsl_map: float, gzsl_map: float, ks: tuple[int, ...] = (3, 5)) -> dict[str, Any]:
    """An eval.json-shaped result."""
    out: dict[str, Any] = {"chance": {"zsl_map": 1.2, "gzsl_map": 0.4}, "images": {"zsl": 10, "gzsl": 12}, "protocol": "sdl"}
    for setting, value in (("zsl", zsl_map), ("gzsl", gzsl_map)):
        out[setting] = {"map": value}
        for k in ks:
            out[setting].update({f"precision@{k}": 20.0, f"recall@{k}": 30.0, f"f1@{k}": 24.0})
    return out


def test_comparison_metrics_name_and_sign(references: reporting.References) -> None:
    published = references.for_dataset("nus_wide")
    metrics = reporting.comparison_metrics(eval_json(20.0, 10.0), published)
    assert metrics["zsl.map.paper_sdl"] == 25.9
    assert metrics["zsl.map.delta_sdl"] == pytest.approx(20.0 - 25.9)
    assert metrics["gzsl.map.delta_sdl"] == pytest.approx(10.0 - 12.1)
    assert metrics["zsl.precision@3.paper_lesa"] == 25.7
    assert metrics["gzsl.f1@5.delta_epsilon"] == pytest.approx(24.0 - 22.5)
    assert "zsl.precision@3.paper_fast0tag_sdl" not in metrics  # that table has no P@3
    # MLflow names: no '@'
    assert tracking.metric_name("zsl.precision@3.delta_sdl") == "zsl.precision_at_3.delta_sdl"
    # other K than the paper's: only the mAPs are compared
    only_map = reporting.comparison_metrics(eval_json(20.0, 10.0, ks=(1, 2)), published)
    assert {k.split(".")[1] for k in only_map} == {"map"}
    assert reporting.comparison_metrics(eval_json(20.0, 10.0), references.for_dataset("embedded")) == {}


def test_comparison_table_for_a_dataset_without_published_numbers(references: reporting.References) -> None:
    results = eval_json(47.0, 37.4, ks=(1, 2))
    chance = {"zsl": {"precision@1": 40.0}, "gzsl": {}}
    table = reporting.comparison_table(results, references.for_dataset("embedded"), chance)
    assert list(table.columns) == ["setting", "metric", "ours", "chance"]
    assert len(table) == 2 * 7
    first = table.iloc[0]
    assert (first["setting"], first["metric"], first["ours"], first["chance"]) == ("ZSL", "map", 47.0, 1.2)
    markdown = reporting.table_markdown(table, "embedded", [])
    assert "| ZSL | map | 47.0 | 1.2 |" in markdown and "ours and chance only" in markdown
    page = reporting.table_html(table, "embedded <test>", [])
    assert "<table>" in page and "&lt;test&gt;" in page


def test_comparison_table_against_the_papers(references: reporting.References) -> None:
    published = references.for_dataset("nus_wide")
    table = reporting.comparison_table(eval_json(20.0, 10.0), published)
    row = table[(table["setting"] == "ZSL") & (table["metric"] == "map")].iloc[0]
    assert row["sdl"] == 25.9 and row["Δ sdl"] == pytest.approx(-5.9) and row["epsilon"] == 33.2
    markdown = reporting.table_markdown(table, "nus_wide", published, references.papers)
    assert "| ZSL | map | 20.0 | 1.2 | 25.9 | -5.9 |" in markdown
    assert "Semantic Diversity Learning" in markdown and "Table 1" in markdown


def test_chance_at_k_is_the_expected_value_of_random_rankings() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 6)) < 0.3).astype(np.float32)
    targets[0] = 0  # an image without positives: dropped under the "sdl" protocol
    columns = np.arange(6)
    expected = reporting.chance_at_k(targets, columns, [1, 3], protocol="sdl")
    draws = np.array([precision_recall_f1_at_k(rng.random(targets.shape), targets, 3)[:2] for _ in range(3000)])
    assert draws[:, 0].mean() == pytest.approx(expected["precision@3"], abs=0.6)
    assert draws[:, 1].mean() == pytest.approx(expected["recall@3"], abs=0.6)
    assert expected["recall@3"] == pytest.approx(50.0)


def test_plots_are_pngs(tmp_path: Path) -> None:
    per_tag = pd.DataFrame({
        "setting": ["zsl"] * 3 + ["gzsl"] * 4, "tag": ["cat", "sheep", "zebra", "dog", "cat", "sheep", "zebra"],
        "unseen": [True, True, True, False, True, True, True], "ap": [50.0, 20.0, 70.0, 60.0, 40.0, 10.0, 65.0],
    })
    curves = pd.DataFrame([
        {"setting": s, "k": k, "precision": 50.0 / k, "recall": 30.0 * k, "f1": 20.0} for s in ("zsl", "gzsl") for k in (1, 2, 3)
    ])
    image = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    items = [reporting.GridItem(image, [("cat", 0.9), ("dog", 0.5)], {"cat", "zebra"}, "a.png")] * 3
    paths = [
        reporting.plot_unseen_ap(per_tag, tmp_path / "ap.png"),
        reporting.plot_pr_at_k(curves, tmp_path / "pr.png"),
        reporting.plot_image_grid(items, {"cat", "zebra"}, tmp_path / "grid.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert min(Image.open(path).size) > 100


def test_evaluation_report_logs_paper_values_deltas_and_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation report on a dataset with published numbers, into a real (sqlite) run."""
    from sdl.reporting import PLOT_FILES
    from sdl.reporting import write_evaluation_report as report

    from tests.test_registry import pin_store, store_uri

    monkeypatch.chdir(tmp_path)
    pin_store(monkeypatch, tmp_path)
    run_id = tracking.start_run("nus_wide", "report-test", {"dataset": "nus_wide"}, {})
    results = eval_json(21.0, 11.0)
    per_tag = pd.DataFrame({"setting": ["zsl", "zsl"], "tag": ["a", "b"], "unseen": [True, True], "ap": [10.0, 30.0]})
    curves = pd.DataFrame([{"setting": "zsl", "k": k, "precision": 10.0, "recall": 5.0 * k, "f1": 7.0} for k in (1, 2)])
    plots = tmp_path / "plots"
    comparison = report("nus_wide", results, {}, per_tag, curves, [], {"a", "b"}, plots, str(REFERENCES), run_id)
    assert comparison["zsl.map.paper_sdl"] == 25.9
    import mlflow

    mlflow.set_tracking_uri(store_uri(tmp_path))
    logged = mlflow.get_run(run_id)
    assert logged.data.metrics["zsl.map.paper_sdl"] == 25.9
    assert logged.data.metrics["zsl.map.delta_sdl"] == pytest.approx(21.0 - 25.9)
    assert logged.data.metrics["gzsl.precision_at_3.delta_biam"] == pytest.approx(20.0 - 25.2)
    assert logged.data.tags["references.version"] == "1"
    listed = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "evaluation")}
    assert {"evaluation/comparison.md", "evaluation/comparison.html", f"evaluation/{PLOT_FILES[0]}"} <= listed
    markdown = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/comparison.md")
    assert "| ZSL | map | 21.0 | 1.2 | 25.9 | -4.9 |" in markdown
    assert math.isclose(float(logged.data.metrics["gzsl.map.paper_epsilon"]), 14.7)
