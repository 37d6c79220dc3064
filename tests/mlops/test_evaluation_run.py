"""The evaluation's MLflow side: comparison metrics, tables and plots logged into a real run."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sdl.eval.plots import PLOT_FILES, write_plots
from sdl.eval.reports import compare_with_published
from sdl.mlops import tracking
from sdl.mlops.evaluation_run import log_comparison
from tests.helpers.results import REFERENCES, eval_json
from tests.helpers.stages import pin_store, store_uri


def test_evaluation_report_logs_paper_values_deltas_and_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation report on a dataset with published numbers, into a real (sqlite) run."""
    monkeypatch.chdir(tmp_path)
    pin_store(monkeypatch, tmp_path)
    run_id = tracking.start_run("nus_wide", "report-test", {"dataset": "nus_wide"}, {})
    results = eval_json(21.0, 11.0)
    per_tag = pd.DataFrame({"setting": ["zsl", "zsl"], "tag": ["a", "b"], "unseen": [True, True], "ap": [10.0, 30.0]})
    curves = pd.DataFrame([{"setting": "zsl", "k": k, "precision": 10.0, "recall": 5.0 * k, "f1": 7.0} for k in (1, 2)])
    plots = tmp_path / "plots"
    write_plots(per_tag, curves, [], {"a", "b"}, plots)
    comparison = compare_with_published("nus_wide", results, {}, REFERENCES, run_id)
    log_comparison(run_id, comparison, plots, [])
    assert comparison.metrics["zsl.map.paper_sdl"] == 25.9
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
