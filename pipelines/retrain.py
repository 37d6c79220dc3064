"""Prefect flow `retrain`: retrain a dataset's model when its data or vocabulary has grown.

It brings the data and the vocabulary up to date (the DVC stages before `train`; DVC decides
what runs), compares them with what the `champion` was trained and registered with, and when
the growth passes the thresholds of ``retrain.<dataset>`` in params.yaml runs `train`,
`evaluate` and `register` (whose promotion gate decides whether the new model becomes
champion). Otherwise it logs that nothing is due. It holds the project's pipeline lock, so it
never runs twice at once or beside a rebuild; registration itself never leaves a half-
registered version (see sdl.mlops.registry). Running it again changes nothing: DVC skips what is
up to date and the registry registers a training run once.

    python -m pipelines.retrain --dataset embedded          # once, now
    python -m pipelines.retrain serve --dataset embedded    # a deployment on its cron schedule
    python -m pipelines.retrain deploy --dataset embedded --pool default   # for workers

`serve` and `deploy` need a Prefect server (``prefect server start``, then
``PREFECT_API_URL``); a worker (``prefect worker start --pool default``) runs what `deploy`
schedules. The deployment runs on its cron schedule in ``retrain.<dataset>.timezone`` and on
the event ``sdl.vocabulary.changed`` (pipelines/vocabulary_events.py), one run at a time across
all runners and workers (a deployment concurrency limit of 1; further runs wait in line),
besides the one-host project lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.rebuild import (
    PROJECT_ROOT,
    check_project_params,
    configure_prefect_environment,
    quiet_user_error_tracebacks,
    stage_names,
    stage_task,
)

configure_prefect_environment()

import pandas as pd  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402

from pipelines.artifacts import publish_stage  # noqa: E402
from pipelines.lock import pipeline_lock  # noqa: E402
from pipelines.vocabulary_events import retrain_trigger  # noqa: E402
from sdl.config.params import dataset_params, load_params  # noqa: E402
from sdl.mlops.growth import measure_growth, retraining_due  # noqa: E402
from sdl.safety.errors import run_command  # noqa: E402


@task(name="compare-with-champion", retries=2, retry_delay_seconds=[10, 30])  # talks to the MLflow server
def compare_with_champion(dataset: str, root: Path) -> dict[str, Any]:
    """Growth of the current vocabulary and labelled images over the champion's, and the verdict."""
    from sdl.mlops import registry

    params = dataset_params(load_params(root / "params.yaml"), dataset)
    with contextlib.chdir(root):  # the default MLflow store is relative to the project
        champion = registry.champion_state(params.model_name)
    if champion is None:
        return {"due": True, "reason": f"{params.model_name} has no champion yet", "champion": None}
    labelled = json.loads((root / f"data/{dataset}/split/tags.json").read_text(encoding="utf-8"))
    current_tags = [*labelled["seen"], *labelled["unseen"]]
    vocabulary = pd.read_parquet(root / f"data/{dataset}/vocabulary.parquet", columns=["tag"])["tag"].tolist()
    current_images = len(pd.read_parquet(root / f"data/{dataset}/manifest.parquet", columns=["image_id"]))
    growth = measure_growth(current_tags, current_images, champion.labelled_tags, champion.labelled_images,
                            vocabulary, champion.tags)
    due, reason = retraining_due(
        growth, params.retrain.min_new_tags, params.retrain.min_new_images, params.retrain.min_relative_growth
    )
    return {"due": due, "reason": reason, "champion": champion.version, "growth": growth.as_dict()}


@flow(name="retrain", log_prints=True)
def retrain(dataset: str = "embedded", force: bool = False, root: str | None = None) -> dict[str, Any]:
    """Retrain ``dataset`` if its growth since the champion passes the thresholds (or ``force``)."""
    logger = get_run_logger()
    quiet_user_error_tracebacks()
    project = Path(root) if root else PROJECT_ROOT
    check_project_params(project, dataset)
    names = stage_names(project)
    upstream, downstream = names[: names.index("train")], names[names.index("train") :]
    with pipeline_lock(project, f"retrain {dataset}"):
        for stage in upstream:
            stage_task(stage)(stage, dataset, project)
            publish_stage(stage, dataset, project)
        verdict = compare_with_champion(dataset, project)
        logger.info("%s: %s (champion version %s; %s)", dataset, verdict["reason"], verdict["champion"],
                    json.dumps(verdict.get("growth", {})))
        if not (verdict["due"] or force):
            return {**verdict, "retrained": False, "outcome": verdict["reason"]}
        outcome = {}
        for stage in downstream:
            outcome[stage] = stage_task(stage)(stage, dataset, project)
            publish_stage(stage, dataset, project)
        retrained = outcome.get("train") == "ran"
        summary = "retrained" if retrained else "not retrained: the training inputs are those of the last training run"
        logger.info("%s: %s", dataset, summary)
        registered = json.loads((project / f"metrics/{dataset}/registered.json").read_text())
        gate = registered.get("gate") or {}
        logger.info("%s: %s version %s, aliases %s; gate: %s", dataset, registered["name"], registered["version"],
                    registered["aliases"], gate.get("reason", "not run"))
        return {**verdict, "retrained": retrained, "outcome": summary, "stages": outcome, "registered": registered}


def deployment_options(dataset: str) -> dict[str, Any]:
    """What `serve` and `deploy` give the deployment: the cron schedule in its time zone
    (params.yaml), the vocabulary-change trigger, the dataset parameter."""
    from prefect.schedules import Cron

    settings = dataset_params(load_params(PROJECT_ROOT / "params.yaml"), dataset).retrain
    return {
        "name": f"retrain-{dataset}", "parameters": {"dataset": dataset},
        "schedules": [Cron(settings.schedule, timezone=settings.timezone)],
        "triggers": [retrain_trigger(dataset)],
    }


def one_at_a_time() -> Any:
    """The deployment concurrency limit: one run at a time; a run due meanwhile waits (ENQUEUE)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def serve(dataset: str) -> None:
    """Serve a deployment of the flow for ``dataset`` (:func:`deployment_options`): this process
    polls the Prefect server and runs the scheduled and triggered runs itself."""
    retrain.serve(**deployment_options(dataset), global_limit=one_at_a_time())


def deploy(dataset: str, pool: str) -> None:
    """Create the deployment in work pool ``pool`` (runs go to its workers, which run the flow
    from this project folder), with :func:`deployment_options`."""
    source = retrain.from_source(source=str(PROJECT_ROOT), entrypoint="pipelines/retrain.py:retrain")
    source.deploy(**deployment_options(dataset), work_pool_name=pool, concurrency_limit=one_at_a_time())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Retrain a dataset's model when its data or vocabulary has grown.")
    parser.add_argument("command", nargs="?", choices=["run", "serve", "deploy"], default="run")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--pool", default="default", help="work pool of `deploy`")
    parser.add_argument("--force", action="store_true", help="retrain even if the thresholds are not reached")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks of errors (or SDL_VERBOSE=1)")
    args = parser.parse_args(argv)

    def run() -> int:
        check_project_params(PROJECT_ROOT, args.dataset)  # before Prefect starts anything
        if args.command == "serve":
            serve(args.dataset)
        elif args.command == "deploy":
            deploy(args.dataset, args.pool)
        else:
            result = retrain(dataset=args.dataset, force=args.force)
            print(json.dumps({k: v for k, v in result.items() if k != "registered"}, indent=2, default=str))
        return 0

    return run_command(run, "pipelines.retrain", argv)


if __name__ == "__main__":
    raise SystemExit(main())
