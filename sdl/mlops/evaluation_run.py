"""A tracked evaluation, what the ``evaluate`` stage does: evaluate the model on the test split
(``sdl.eval``), write ``eval.json``, the summary DVC shows, the per-tag and per-K tables, the
plots and the comparison with the published results, and log all of it to MLflow.

In MLflow the metrics are linked to the model (the LoggedModel ``train`` logged, or one logged
here from the folder when the store lacks it: ``sdl.mlops.logged_models.resolve``) and to the
test data as an ``mlflow.data`` dataset whose digest covers the manifest, the split and the
vocabulary. Each evaluation is one record: a grown vocabulary is another dataset digest on the
model and the next step of the run's metrics, not an overwrite of the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sdl.config.metric_names import SETTINGS
from sdl.config.params import DatasetParams
from sdl.eval.model_evaluation import evaluate_model
from sdl.eval.plots import PLOT_FILES, write_plots
from sdl.eval.reports import Comparison, compare_with_published
from sdl.eval.test_set import TestSet, read_test_set
from sdl.mlops import logged_models, run_context, tracking
from sdl.safety.atomic import atomic_write_text, file_md5, write_json
from sdl.text.vocabulary import vocabulary_hash

log = logging.getLogger(__name__)

TEST_CONTEXT = "test"


def summary_metrics(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """What ``dvc exp show`` and ``dvc metrics diff`` list: ZSL and GZSL mAP and F1@K."""
    return {s: {k: v for k, v in results[s].items() if k == "map" or k.startswith("f1@")} for s in SETTINGS}


def evaluate_tracked(
    dataset: str, params: DatasetParams, manifest: str | Path, split: str | Path, vocabulary: str | Path,
    model: str | Path, references: str | Path, metrics: str | Path, summary: str | Path, comparison: str | Path,
    per_tag: str | Path, curves: str | Path, plots: str | Path, progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``dataset``'s model, write its metrics, tables, plots and comparison, log them
    to MLflow; return the results."""
    test = read_test_set(manifest, split, vocabulary, params.evaluate.protocol)
    evaluation = evaluate_model(model, test, params.evaluate, progress=progress)
    atomic_write_text(per_tag, evaluation.per_tag.to_csv(index=False))
    atomic_write_text(curves, evaluation.curves.to_csv(index=False))
    tracked = logged_models.resolve(
        model, dataset, logged_models.vocabulary_of(test.tags.all_tags, test.dataset_vectors, test.tags.unseen)
    )
    results = evaluation.results
    write_json(metrics, results)
    write_json(summary, summary_metrics(results))
    step = log_evaluation(tracked, results, test_dataset(dataset, manifest, split, test))
    plots = Path(plots)
    write_plots(evaluation.per_tag, evaluation.curves, evaluation.grid, set(test.tags.unseen), plots)
    compared = compare_with_published(dataset, results, evaluation.chance, references, tracked.run_id)
    atomic_write_text(comparison, compared.markdown)
    log_comparison(tracked.run_id, compared, plots, [Path(per_tag), Path(curves)], step, tracked.model_id)
    log.info(
        "%s test (%d images; protocol %s, evaluated ZSL %d / GZSL %d): ZSL mAP %.2f (chance %.2f), GZSL mAP %.2f "
        "(chance %.2f); labels per image ZSL %.2f, GZSL %.2f; %d extra tags",
        dataset, len(test.paths), results["protocol"], results["images"]["zsl"], results["images"]["gzsl"],
        results["zsl"]["map"], results["chance"]["zsl_map"], results["gzsl"]["map"], results["chance"]["gzsl_map"],
        results["labels_per_image"]["zsl"], results["labels_per_image"]["gzsl"], results["vocabulary"]["extra_tags"],
    )
    return results


def test_dataset(dataset: str, manifest: str | Path, split: str | Path, test: TestSet) -> Any:
    """The test images and their tags as an ``mlflow.data`` dataset named ``<dataset>-test``;
    its digest covers the manifest (its md5), the image split and the served vocabulary."""
    mlflow = tracking.configured_mlflow()
    manifest_md5 = file_md5(manifest)
    split_md5 = file_md5(Path(split) / "images.parquet")
    served = test.vocabulary["tag"].tolist()
    digest = hashlib.sha256(f"{manifest_md5}:{split_md5}:{vocabulary_hash(served)}".encode()).hexdigest()[:32]
    frame = pd.DataFrame({"image": [p.name for p in test.paths], "tags": ["|".join(t) for t in test.tag_lists]})
    with warnings.catch_warnings():  # a file URI "can be interpreted in multiple ways": all local files
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(frame, source=Path(manifest).resolve().as_uri(), name=f"{dataset}-test",
                                       digest=digest)


def log_evaluation(tracked: logged_models.TrackedModel, results: Mapping[str, Any], data: Any) -> int:
    """Log ``results`` into the model's run, linked to the model and the test dataset, as the
    next step of the run's evaluation history; return that step."""
    mlflow = tracking.configured_mlflow()
    from mlflow.entities import DatasetInput, InputTag, LoggedModelInput, Metric

    client = mlflow.MlflowClient()
    step = len(client.get_metric_history(tracked.run_id, tracking.metric_name("gzsl.map")))
    client.log_inputs(
        tracked.run_id,
        datasets=[DatasetInput(data._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", TEST_CONTEXT)])],
        models=[LoggedModelInput(tracked.model_id)],
    )
    now = int(time.time() * 1000)
    flat = {k: v for k, v in tracking.flatten(results).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    entries = [
        Metric(tracking.metric_name(k), float(v), now, step, model_id=tracked.model_id,
               dataset_name=data.name, dataset_digest=data.digest)
        for k, v in flat.items()
    ]
    for start in range(0, len(entries), 1000):
        client.log_batch(tracked.run_id, metrics=entries[start : start + 1000])
    tracking.set_run_tags(tracked.run_id, {
        "evaluation.dataset_digest": data.digest, "evaluation.step": str(step), **run_context.experiment_tags(),
    })
    return step


def log_comparison(run_id: str | None, comparison: Comparison, plots: Path, tables: list[Path], step: int = 0,
                   model_id: str | None = None) -> None:
    """The comparison metrics, tables, and the evaluation's files into the MLflow run."""
    if not run_id:
        return
    tracking.log_metrics(run_id, comparison.metrics, step=step, model_id=model_id)
    tracking.log_text(run_id, comparison.markdown, "evaluation/comparison.md")
    tracking.log_text(run_id, comparison.html, "evaluation/comparison.html")
    tracking.set_run_tags(run_id, {
        "references.version": comparison.references_version,
        "references.compared": ",".join(comparison.compared) or "none",
    })
    for path in (*tables, *(plots / name for name in PLOT_FILES)):
        if path.exists():
            tracking.log_artifact(run_id, path, "evaluation")
