"""The MLflow adapter: where the tracking store is, runs, params, metrics, tags, artifacts.
``sdl.mlops`` reaches MLflow through :func:`configured_mlflow`.

Default store: ``sqlite:///mlflow/mlflow.db`` with artifacts under ``mlflow/artifacts``, in
the project's root (:func:`project_root`: the DVC repository a stage runs for, else the working
directory). The environment variable ``MLFLOW_TRACKING_URI`` (a tracking server URL, say)
overrides it. One experiment per dataset, named ``sdl-<dataset>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sdl.safety.atomic import write_json
from sdl.safety.errors import UserError
from sdl.safety.redaction import redact, redact_mapping

log = logging.getLogger(__name__)

DEFAULT_STORE = "sqlite:///mlflow/mlflow.db"
DEFAULT_ARTIFACTS = "mlflow/artifacts"
RUN_FILE = "run.json"
_MAX_PARAM_LENGTH = 6000


def project_root() -> Path:
    """The folder whose ``mlflow/`` holds the default store.

    DVC sets ``DVC_ROOT`` for every stage it runs: the repository root for ``dvc repro``, and for
    ``dvc exp run --temp`` and queued experiments (which run in a copy under
    ``.dvc/tmp/exps/``) the original repository, so that an experiment's runs, versions and
    locks land in the project's store instead of a throwaway one in the copy. Outside DVC:
    the working directory."""
    root = os.environ.get("DVC_ROOT")
    return Path(root).resolve() if root else Path.cwd().resolve()


def default_store_path() -> Path:
    """The project's sqlite file (``<project root>/mlflow/mlflow.db``)."""
    return project_root() / DEFAULT_STORE.removeprefix("sqlite:///")


def default_store_uri() -> str:
    """The local sqlite store as an absolute URI: MLflow caches stores by URI string, so a
    relative one would keep pointing at the first working directory that used it."""
    return f"sqlite:///{default_store_path()}"


def tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or the local sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_store_uri()


def uses_local_store() -> bool:
    """Whether the tracking URI in force is the project's local sqlite store."""
    return tracking_uri() == default_store_uri()


class TrackingUnavailable(UserError, RuntimeError):
    """The MLflow tracking server cannot be reached; nothing was logged or registered."""


_REACHED: set[str] = set()


def check_reachable(uri: str, attempts: int = 3, timeout: float = 5.0) -> None:
    """For an ``http(s)`` tracking URI, connect to its server once per process (a few tries)
    and raise :class:`TrackingUnavailable`, naming it, when nothing answers: a clear error at
    once instead of MLflow's minutes of retries ending in a stack of connection errors."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or uri in _REACHED:
        return
    proxies = urllib.request.getproxies()
    if (parts.scheme in proxies or "all" in proxies) and not urllib.request.proxy_bypass(parts.hostname or ""):
        return  # reached through a proxy: a direct connection proves nothing; MLflow reports failures
    port = parts.port or (443 if parts.scheme == "https" else 80)
    reason = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(1.0)
        try:
            with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
                _REACHED.add(uri)
                return
        except OSError as error:
            reason = str(error)
    raise TrackingUnavailable(
        f"the MLflow tracking server at {redact(uri)} is unavailable ({reason}); nothing was logged or "
        "registered: start it (or set MLFLOW_TRACKING_URI to one that runs) and run this stage again"
    )


def configured_mlflow():  # type: ignore[no-untyped-def]
    """The ``mlflow`` module pointed at the store in force (``tracking_uri``), its server checked
    once: the way into MLflow for ``sdl.mlops`` (nothing outside ``sdl.mlops`` imports mlflow)."""
    import mlflow

    if not sys.stderr.isatty():  # no download progress bars in logs
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri()
    if uses_local_store():
        default_store_path().parent.mkdir(parents=True, exist_ok=True)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow


def experiment_name(dataset: str) -> str:
    """The experiment of a dataset."""
    return f"sdl-{dataset}"


def ensure_experiment(dataset: str) -> str:
    """Get or create the dataset's experiment; return its id."""
    mlflow = configured_mlflow()
    name = experiment_name(dataset)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uses_local_store():
        location = (project_root() / DEFAULT_ARTIFACTS).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def start_run(dataset: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
    """Create a run in the dataset's experiment, log its tags and (flattened) params; return its id.

    Credentials never reach the store: credential-like keys are masked and URLs lose their
    user-info (see :mod:`sdl.safety.redaction`)."""
    mlflow = configured_mlflow()
    client = mlflow.MlflowClient()
    safe_tags = {str(k): str(v) for k, v in redact_mapping(dict(tags)).items()}
    run = client.create_run(ensure_experiment(dataset), run_name=run_name, tags=safe_tags)
    flat = {k: str(v)[:_MAX_PARAM_LENGTH] for k, v in redact_mapping(flatten(params)).items()}
    items = list(flat.items())
    for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in items[start : start + 100]])
    return run.info.run_id


def metric_name(key: str) -> str:
    """MLflow's name for a metric key: ``zsl.f1@3`` -> ``zsl.f1_at_3`` (MLflow rejects '@')."""
    return key.replace("@", "_at_")


def client():  # type: ignore[no-untyped-def]
    """An ``MlflowClient`` of the store in force."""
    return configured_mlflow().MlflowClient()


def download_artifacts(artifact_uri: str, dst_path: str | Path) -> Path:
    """Download a run's or a model version's artifacts (``models:/<name>/<version>/...``)."""
    return Path(configured_mlflow().artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(dst_path)))


def log_metrics(run_id: str, metrics: Mapping[str, Any], step: int | None = None, model_id: str | None = None) -> None:
    """Log (flattened, numeric) metrics to a run (linked to the LoggedModel ``model_id``, if given)."""
    mlflow = configured_mlflow()
    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    entries = [
        mlflow.entities.Metric(metric_name(k), float(v), now, step or 0, model_id=model_id)
        for k, v in flatten(metrics).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    for start in range(0, len(entries), 1000):
        client.log_batch(run_id, metrics=entries[start : start + 1000])


@contextlib.contextmanager
def system_metrics(run_id: str, interval: float = 10.0) -> Iterator[None]:
    """Log CPU, memory, disk, network (and GPU, where ``pynvml`` is installed) usage into the
    run as ``system/...`` metrics while the block runs, every ``interval`` seconds
    (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides it)."""
    mlflow = configured_mlflow()
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, tracking_uri=mlflow.get_tracking_uri())
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def log_artifact(run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    """Copy a file into a run's artifacts."""
    configured_mlflow().MlflowClient().log_artifact(run_id, str(path), artifact_path)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    """Write ``text`` as an artifact file of a run (e.g. ``evaluation/comparison.md``)."""
    configured_mlflow().MlflowClient().log_text(run_id, text, artifact_file)


def set_run_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    """Set (string) tags on a run."""
    mlflow = configured_mlflow()
    entries = [mlflow.entities.RunTag(str(k), str(v)) for k, v in redact_mapping(dict(tags)).items()]
    for start in range(0, len(entries), 100):
        mlflow.MlflowClient().log_batch(run_id, tags=entries[start : start + 100])


def set_run_status(run_id: str, status: str = "FINISHED") -> None:
    """Mark a run finished (or FAILED)."""
    configured_mlflow().MlflowClient().set_terminated(run_id, status=status)


def record_metrics(path: str | Path, metrics: Mapping[str, Any], run_id: str | None, step: int | None = None) -> None:
    """The one place metrics are written: the JSON file DVC tracks, and the MLflow run."""
    write_json(path, metrics)
    if run_id:
        log_metrics(run_id, metrics, step)


def write_run_file(folder: str | Path, run_id: str, dataset: str, model_id: str | None = None) -> None:
    """Remember which MLflow run (and LoggedModel) produced a model folder."""
    record = {"run_id": run_id, "dataset": dataset, "tracking_uri": redact(tracking_uri())}
    if model_id:
        record["model_id"] = model_id
    write_json(Path(folder) / RUN_FILE, record)


def read_run_id(folder: str | Path) -> str:
    """The MLflow run id of a model folder written by the train stage."""
    with open(Path(folder) / RUN_FILE, encoding="utf-8") as handle:
        return str(json.load(handle)["run_id"])


def iter_registered_versions(name: str) -> Iterator[Any]:
    """Versions of a registered model, newest first."""
    client = configured_mlflow().MlflowClient()
    versions = client.search_model_versions(f"name = '{name}'")
    yield from sorted(versions, key=lambda v: int(v.version), reverse=True)


LOCAL_UI = "http://127.0.0.1:5000"  # `make ui` / `mlflow ui` on the project's sqlite store


def run_page_url(run_id: str, dataset: str) -> tuple[str, str]:
    """The MLflow UI page of a run, and where that UI is: the tracking server in force, or for
    the project's sqlite store the local UI (``make ui``) at :data:`LOCAL_UI`."""
    experiment = ensure_experiment(dataset)
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        base, where = redact(uri).rstrip("/"), "the tracking server"
    else:
        base, where = LOCAL_UI, "start the UI with `make ui`"
    return f"{base}/#/experiments/{experiment}/runs/{run_id}", where
