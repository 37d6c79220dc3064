"""A tracked evaluation, what the ``evaluate`` stage does: evaluate the model on the test split
(``sdl.eval``), write ``eval.json``, the per-tag and per-K tables and the plots, and log all of
it to the model's MLflow run beside the published results of the same dataset."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sdl.config.params import DatasetParams
from sdl.eval.model_evaluation import evaluate_model
from sdl.eval.plots import PLOT_FILES, write_plots
from sdl.eval.reports import Comparison, compare_with_published
from sdl.eval.test_set import read_test_set
from sdl.mlops import tracking
from sdl.safety.atomic import atomic_write_text

log = logging.getLogger(__name__)

TABLE_FILES = ("per_tag_ap.csv", "pr_at_k.csv")


def evaluate_tracked(
    dataset: str, params: DatasetParams, manifest: str | Path, split: str | Path, vocabulary: str | Path,
    model: str | Path, references: str | Path, metrics: str | Path, plots: str | Path, progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``dataset``'s model, write its metrics and plots, log them; return the results."""
    test = read_test_set(manifest, split, vocabulary, params.evaluate.protocol)
    evaluation = evaluate_model(model, test, params.evaluate, progress=progress)
    plots = Path(plots)
    atomic_write_text(plots / TABLE_FILES[0], evaluation.per_tag.to_csv(index=False))
    atomic_write_text(plots / TABLE_FILES[1], evaluation.curves.to_csv(index=False))
    run_id = tracking.read_run_id(model)
    results = evaluation.results
    tracking.record_metrics(metrics, results, run_id)
    write_plots(evaluation.per_tag, evaluation.curves, evaluation.grid, set(test.tags.unseen), plots)
    comparison = compare_with_published(dataset, results, evaluation.chance, references, run_id)
    log_comparison(run_id, comparison, plots)
    log.info(
        "%s test (%d images; protocol %s, evaluated ZSL %d / GZSL %d): ZSL mAP %.2f (chance %.2f), GZSL mAP %.2f "
        "(chance %.2f); labels per image ZSL %.2f, GZSL %.2f; %d extra tags",
        dataset, len(test.paths), results["protocol"], results["images"]["zsl"], results["images"]["gzsl"],
        results["zsl"]["map"], results["chance"]["zsl_map"], results["gzsl"]["map"], results["chance"]["gzsl_map"],
        results["labels_per_image"]["zsl"], results["labels_per_image"]["gzsl"], results["vocabulary"]["extra_tags"],
    )
    return results


def log_comparison(run_id: str | None, comparison: Comparison, plots: Path) -> None:
    """The comparison metrics, tables, and the evaluation's files into the MLflow run."""
    if not run_id:
        return
    tracking.log_metrics(run_id, comparison.metrics)
    tracking.log_text(run_id, comparison.markdown, "evaluation/comparison.md")
    tracking.log_text(run_id, comparison.html, "evaluation/comparison.html")
    tracking.set_run_tags(run_id, {
        "references.version": comparison.references_version,
        "references.compared": ",".join(comparison.compared) or "none",
    })
    for name in (*TABLE_FILES, *PLOT_FILES):
        if (plots / name).exists():
            tracking.log_artifact(run_id, plots / name, "evaluation")
