"""Prefect flow `rebuild`: run the DVC pipeline of one dataset, stage by stage.

DVC alone decides what is up to date (each task runs ``dvc repro <stage>@<dataset>``); the
stage list and its order come from dvc.yaml, so there is no second copy of the DAG. Prefect
adds retries on the stages that touch the network or a server, and a readable run log. The
project's pipeline lock (pipelines/lock.py) keeps a second run from starting beside it.

    python -m pipelines.rebuild --dataset embedded

With a Prefect server or Cloud configured (``PREFECT_API_URL``, a profile, ``PREFECT_HOME``)
the run goes there, as any Prefect run; with none, Prefect starts a temporary local server for
the run and the project keeps its state in ``.state/prefect`` (pipelines/prefect_env.py). The
run publishes artifacts (the validation report, the evaluation against the paper, the gate's
decision, a link to the MLflow run: pipelines/artifacts.py) and, when `embed` changed the
vocabulary, the event ``sdl.vocabulary.changed`` that the retraining deployment listens to.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def configure_prefect_environment(root: Path = PROJECT_ROOT) -> None:
    """Keep the temporary server's state inside the project, with analytics off, unless the
    user has configured Prefect (their home, profile or API are then used as they are)."""
    from pipelines.prefect_env import user_configured

    if not user_configured(root):
        os.environ.setdefault("PREFECT_HOME", str(root / ".state" / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


configure_prefect_environment()

import yaml  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402

from pipelines.artifacts import publish_stage  # noqa: E402
from pipelines.lock import pipeline_lock  # noqa: E402
from pipelines.vocabulary_events import announce_vocabulary, vocabulary_state  # noqa: E402

# Stages that talk to the outside world (downloads) or to a server (the MLflow registry):
# only they are retried. A failed local computation would fail the same way again.
RETRIES = {"download": 3, "register": 3}
RETRY_DELAYS = [10, 30, 90]


def stage_names(root: Path = PROJECT_ROOT) -> list[str]:
    """The stages of dvc.yaml in their declared (dependency) order."""
    with open(root / "dvc.yaml", encoding="utf-8") as handle:
        return list(yaml.safe_load(handle)["stages"])


def dvc_command() -> list[str]:
    """DVC from the interpreter's environment, so stages run with the same Python."""
    candidate = Path(sys.executable).with_name("dvc")
    return [str(candidate)] if candidate.exists() else ["dvc"]


def run_stage(stage: str, dataset: str, root: Path, force: bool = False) -> str:
    """``dvc repro <stage>@<dataset>``; stream its output to the run log; raise on failure."""
    logger = get_run_logger()
    command = [*dvc_command(), "repro", f"{stage}@{dataset}", *(["--force", "--single-item"] if force else [])]
    logger.info("$ %s", shlex.join(command))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line and "\r" not in line:  # progress bars redraw with \r: keep the log readable
            logger.info("%s | %s", stage, line)
        lines.append(line)
    if process.wait() != 0:
        tail = "\n".join(lines[-30:])
        raise RuntimeError(f"stage {stage}@{dataset} failed (exit {process.returncode}):\n{tail}")
    ran = any(line.startswith(f"Running stage '{stage}@{dataset}'") for line in lines)
    return "ran" if ran else "up to date"


def stage_task(stage: str):  # type: ignore[no-untyped-def]
    """A Prefect task named after the DVC stage, with retries where the stage needs them."""
    return task(
        run_stage, name=stage, task_run_name=f"{stage}-{{dataset}}",
        retries=RETRIES.get(stage, 0), retry_delay_seconds=RETRY_DELAYS if stage in RETRIES else 0,
    )


@flow(name="rebuild", log_prints=True)
def rebuild(dataset: str = "embedded", force: bool = False, root: str | None = None) -> dict[str, str]:
    """Bring every stage of ``dataset`` up to date, in dvc.yaml order; return what each did."""
    logger = get_run_logger()
    project = Path(root) if root else PROJECT_ROOT
    outcome: dict[str, str] = {}
    vocabulary: dict[str, list[str] | None] = {}
    with pipeline_lock(project, f"rebuild {dataset}"):
        for stage in stage_names(project):
            if stage == "embed":
                vocabulary["before"] = vocabulary_state(project, dataset)
            outcome[stage] = stage_task(stage)(stage, dataset, project, force)
            logger.info("%s@%s: %s", stage, dataset, outcome[stage])
            publish_stage(stage, dataset, project)
    if "before" in vocabulary:  # once the lock is released: the retraining it triggers takes the lock
        announce_vocabulary(dataset, project, vocabulary["before"])
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild one dataset's pipeline through DVC, with Prefect.")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--force", action="store_true", help="rerun every stage even if up to date")
    args = parser.parse_args(argv)
    outcome = rebuild(dataset=args.dataset, force=args.force)
    print("\n".join(f"{stage:>9}: {what}" for stage, what in outcome.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
