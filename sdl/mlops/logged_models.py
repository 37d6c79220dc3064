"""The trained network as an MLflow 3 LoggedModel, and finding it again.

``train`` logs the model folder (weights, config, lineage) with the dataset's vocabulary as a
LoggedModel (``model_type`` ``sdl-network``) of its run and writes the model id into the
folder's ``run.json``; ``evaluate`` links its metrics to it, so the experiment's Models tab
shows each model's numbers. ``register`` packages the same network as the servable pyfunc
tagger (another LoggedModel of the run, ``sdl.mlops.model_logging``, tagged with the network's
id) and registers that. Packaging stays out of ``train`` on purpose: the tagger bundles the
serving code, and a change to serving must not make DVC retrain.

A model folder can reach a store that has
never seen its run: after ``dvc pull`` on another clone (the outputs come from the remote or
the run-cache) ``run.json`` names a run and a model of the store they were trained with.
:func:`resolve` then finds the model by its content digest (``sdl.model_digest``: the weights
and config), or logs it anew from the folder in a run of its own, linked to the original by
tags, so evaluation and registration work in any store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdl.mlops import run_context, tracking

log = logging.getLogger(__name__)

MODEL_DIGEST_TAG = "sdl.model_digest"
VOCABULARY_DIGEST_TAG = "sdl.vocabulary_digest"
ORIGINAL_RUN_TAG = "sdl.original_run_id"
ORIGINAL_MODEL_TAG = "sdl.original_model_id"
NETWORK_MODEL_TAG = "sdl.network_model_id"  # on a registered tagger: the network it packages
MODEL_TYPE = "sdl-network"
VOCABULARY_FILE = "vocabulary.parquet"
_MODEL_FILES = ("model.safetensors", "model.json")


@dataclass(frozen=True)
class TrackedModel:
    """A model folder's run and LoggedModel in the store in force (``imported``: logged here
    from the folder because the store did not have the run ``run.json`` names)."""

    run_id: str
    model_id: str
    imported: bool = False


@dataclass(frozen=True)
class LoggedVocabulary:
    """The tags a logged tagger ranks by default, their vectors and which were unseen in training."""

    tags: list[str]
    vectors: np.ndarray
    unseen: list[str]

    def write(self, path: Path) -> None:
        """As Parquet (tag, vector, unseen): the layout of the tagger's vocabulary artifact."""
        import pyarrow as pa

        from sdl.safety.atomic import write_parquet

        unseen = set(self.unseen)
        write_parquet(path, pa.table({
            "tag": pa.array(self.tags, pa.string()),
            "vector": pa.array([list(map(float, v)) for v in self.vectors], pa.list_(pa.float32())),
            "unseen": pa.array([t in unseen for t in self.tags], pa.bool_()),
        }))

    @property
    def digest(self) -> str:
        h = hashlib.sha256("\n".join(self.tags).encode())
        h.update(",".join(sorted(self.unseen)).encode())
        h.update(np.ascontiguousarray(self.vectors, dtype=np.float32).tobytes())
        return h.hexdigest()[:32]


def model_digest(model_dir: str | Path) -> str:
    """sha256 of the weights and config of a model folder (what makes two folders one model)."""
    h = hashlib.sha256()
    for name in _MODEL_FILES:
        with open(Path(model_dir) / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:32]


def log_network(
    run_id: str, dataset: str, model_dir: str | Path, vocabulary: LoggedVocabulary,
    extra_tags: Mapping[str, str] | None = None,
) -> str:
    """Log ``model_dir`` (weights, config, lineage) and ``vocabulary`` as a LoggedModel of
    ``run_id``, its output; return the model id."""
    import tempfile

    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    client = tracking.client()
    lineage_file = Path(model_dir) / "tags.json"
    lineage = json.loads(lineage_file.read_text(encoding="utf-8")) if lineage_file.exists() else {}
    tags = {MODEL_DIGEST_TAG: model_digest(model_dir), VOCABULARY_DIGEST_TAG: vocabulary.digest,
            **{k: str(v) for k, v in lineage.items() if k not in ("seen", "unseen")},
            **run_context.experiment_tags(), **(extra_tags or {})}
    model = client.create_logged_model(
        experiment_id=tracking.ensure_experiment(dataset), name="network", source_run_id=run_id,
        tags={k: str(v) for k, v in tags.items()}, model_type=MODEL_TYPE,
    )
    try:
        client.log_model_artifacts(model.model_id, str(model_dir))
        with tempfile.TemporaryDirectory() as scratch:
            vocabulary.write(Path(scratch) / VOCABULARY_FILE)
            client.log_model_artifacts(model.model_id, scratch)
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return str(model.model_id)


def _exists(kind: str, identifier: str) -> bool:
    client = tracking.client()
    try:
        client.get_run(identifier) if kind == "run" else client.get_logged_model(identifier)
    except Exception:  # MlflowException (RESOURCE_DOES_NOT_EXIST), or an id of another store's format
        return False
    return True


def _find_by_digest(dataset: str, digest: str) -> TrackedModel | None:
    mlflow = tracking.configured_mlflow()
    found = mlflow.search_logged_models(
        experiment_ids=[tracking.ensure_experiment(dataset)],
        filter_string=f"tags.`{MODEL_DIGEST_TAG}` = '{digest}'", output_format="list",
        order_by=[{"field_name": "creation_time", "ascending": True}],
    )
    for model in found:
        if model.source_run_id and _exists("run", model.source_run_id):
            imported = ORIGINAL_RUN_TAG in (model.tags or {})
            return TrackedModel(run_id=model.source_run_id, model_id=model.model_id, imported=imported)
    return None


def read_record(model_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a model folder (run id, model id, dataset, the store it was logged to)."""
    with open(Path(model_dir) / tracking.RUN_FILE, encoding="utf-8") as handle:
        return dict(json.load(handle))


def resolve(model_dir: str | Path, dataset: str, vocabulary: LoggedVocabulary) -> TrackedModel:
    """The run and LoggedModel of ``model_dir`` in the store in force: those ``run.json``
    names when the store has them; else a model of the same digest logged here before; else the
    network logged from the folder with ``vocabulary``, into the run of ``run.json`` when the
    store has it (a folder trained before models were logged), or into a new run
    (``<dataset>-model``, tagged with the original run and model ids and the folder's lineage)."""
    record = read_record(model_dir)
    run_id, model_id = str(record.get("run_id", "")), str(record.get("model_id", ""))
    run_here = bool(run_id) and _exists("run", run_id)
    if run_here and model_id and _exists("model", model_id):
        return TrackedModel(run_id=run_id, model_id=model_id)
    found = _find_by_digest(dataset, model_digest(model_dir))
    if found is not None:
        return found
    if run_here:
        return TrackedModel(run_id=run_id, model_id=log_network(run_id, dataset, model_dir, vocabulary))
    lineage_file = Path(model_dir) / "tags.json"
    lineage = json.loads(lineage_file.read_text(encoding="utf-8")) if lineage_file.exists() else {}
    origin = {ORIGINAL_RUN_TAG: run_id or "unknown", ORIGINAL_MODEL_TAG: model_id or "unknown"}
    tags = {**{k: str(v) for k, v in lineage.items() if k not in ("seen", "unseen")}, **origin,
            **run_context.run_tags("stages.evaluate")}
    new_run = tracking.start_run(dataset, f"{dataset}-model", tags, {})
    log.warning(
        "%s: the store has no run %s (run.json of %s, logged to %s): logging the model from the folder "
        "into run %s of its own", dataset, run_id or "?", model_dir, record.get("tracking_uri", "?"), new_run,
    )
    new_model = log_network(new_run, dataset, model_dir, vocabulary, origin)
    tracking.set_run_status(new_run)
    return TrackedModel(run_id=new_run, model_id=new_model, imported=True)


def vocabulary_of(tags: Sequence[str], vectors: np.ndarray, unseen: Sequence[str]) -> LoggedVocabulary:
    return LoggedVocabulary(tags=list(tags), vectors=np.asarray(vectors, np.float32), unseen=list(unseen))
