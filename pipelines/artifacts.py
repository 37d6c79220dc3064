"""Prefect artifacts of a pipeline run, read from what the DVC stages wrote.

After `validate`: the validation report (Markdown), its expectations (a table) and a link to
the Great Expectations Data Docs. After `evaluate`: the comparison with the published results
(Markdown) and the summary metrics (a table). After `register`: the gate's decision (Markdown
and a table of both models' scores) and a link to the MLflow run. Keys are
``<dataset>-validation``, ``<dataset>-evaluation``, ``<dataset>-gate``, ``<dataset>-mlflow-run``
(and ``-data-docs``), so the Artifacts page keeps each one's history across runs.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact


def artifact_key(dataset: str, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{dataset}-{what}".lower()).strip("-")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def publish_validation(dataset: str, root: Path) -> list[str]:
    folder = root / "data" / dataset / "validation"
    made = []
    if (folder / "report.md").is_file():
        create_markdown_artifact((folder / "report.md").read_text(encoding="utf-8"),
                                 key=artifact_key(dataset, "validation"), description=f"{dataset}: data validation")
        made.append("validation")
    report = _read_json(folder / "report.json")
    if report is not None:
        rows = [{"suite": r["suite"], "expectation": r["expectation"], "column": r.get("column") or "",
                 "success": r["success"], "unexpected": r["unexpected_count"],
                 "examples": ", ".join(map(str, r.get("examples", [])[:5]))} for r in report.get("expectations", [])]
        create_table_artifact(rows, key=artifact_key(dataset, "expectations"),
                              description=f"{dataset}: every expectation of the validate stage")
        made.append("expectations")
    docs = root / "data" / dataset / "data_docs" / "index.html"
    if docs.is_file():
        create_link_artifact(docs.resolve().as_uri(), link_text="Great Expectations Data Docs",
                             key=artifact_key(dataset, "data-docs"), description=f"{dataset}: validation Data Docs")
        made.append("data-docs")
    return made


def publish_evaluation(dataset: str, root: Path) -> list[str]:
    made = []
    comparison = root / "metrics" / dataset / "comparison.md"
    if comparison.is_file():
        create_markdown_artifact(comparison.read_text(encoding="utf-8"), key=artifact_key(dataset, "evaluation"),
                                 description=f"{dataset}: test results against the published ones")
        made.append("evaluation")
    summary = _read_json(root / "metrics" / dataset / "summary.json")
    if summary is not None:
        rows = [{"setting": s.upper(), "metric": m, "value": round(float(v), 2)}
                for s, values in summary.items() for m, v in values.items()]
        create_table_artifact(rows, key=artifact_key(dataset, "metrics"), description=f"{dataset}: test metrics (%)")
        made.append("metrics")
    return made


def gate_markdown(registered: dict[str, Any]) -> str:
    """The gate's decision as a short Markdown report."""
    gate = registered.get("gate") or {}
    lines = [f"# Promotion gate of {registered['name']} version {registered['version']}", "",
             f"- decision: **{'promoted' if gate.get('promoted') else 'not promoted'}**",
             f"- reason: {gate.get('reason', 'no gate decision recorded')}",
             f"- aliases now: {', '.join(registered.get('aliases') or []) or 'none'}",
             f"- primary metric: {gate.get('primary_metric', '?')}, min margin {gate.get('min_margin', '?')}",
             f"- test images: {gate.get('images', '?')}; vocabulary {gate.get('vocabulary_hash', '?')}",
             f"- MLflow run: {registered.get('run_id', '?')}"]
    return "\n".join(lines) + "\n"


def _gate_rows(gate: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for setting in ("zsl", "gzsl"):
        for metric, value in (gate.get("challenger_metrics") or {}).get(setting, {}).items():
            champion = (gate.get("champion_metrics") or {}).get(setting, {}).get(metric)
            rows.append({"setting": setting.upper(), "metric": metric, "challenger": round(float(value), 2),
                         "champion": round(float(champion), 2) if champion is not None else None})
    return rows


def publish_registration(dataset: str, root: Path) -> list[str]:
    from sdl.mlops import tracking

    registered = _read_json(root / "metrics" / dataset / "registered.json")
    if registered is None:
        return []
    create_markdown_artifact(gate_markdown(registered), key=artifact_key(dataset, "gate"),
                             description=f"{dataset}: the promotion gate's decision")
    made = ["gate"]
    rows = _gate_rows(registered.get("gate") or {})
    if rows:
        create_table_artifact(rows, key=artifact_key(dataset, "gate-scores"),
                              description=f"{dataset}: challenger and champion on the gate's test data")
        made.append("gate-scores")
    run_id = registered.get("run_id")
    if run_id:
        with contextlib.chdir(root):  # the default MLflow store is the project's
            url, where = tracking.run_page_url(str(run_id), dataset)
        create_link_artifact(url, link_text=f"MLflow run {run_id}", key=artifact_key(dataset, "mlflow-run"),
                             description=f"{dataset}: the model's MLflow run ({where})")
        made.append("mlflow-run")
    return made


PUBLISHERS = {"validate": publish_validation, "evaluate": publish_evaluation, "register": publish_registration}


def publish_stage(stage: str, dataset: str, root: Path) -> list[str]:
    """The artifacts of ``stage`` (none for the other stages); never fails the flow."""
    publisher = PUBLISHERS.get(stage)
    if publisher is None:
        return []
    try:
        made = publisher(dataset, root)
    except Exception as error:  # an artifact is a report: the stage itself succeeded
        get_run_logger().warning("%s@%s: could not publish its artifacts: %s", stage, dataset, error)
        return []
    get_run_logger().info("%s@%s: artifacts %s", stage, dataset, ", ".join(made) or "none")
    return made
