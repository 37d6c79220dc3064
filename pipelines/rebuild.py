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
    # The temporary local server must come up on a machine busy training: Prefect waits 20 s by
    # default, which a loaded 2-core machine has exceeded; and its database folder must exist
    # (Prefect does not create the parents of PREFECT_HOME, and its server then never starts).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if os.environ.get("PREFECT_HOME"):
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


configure_prefect_environment()

import logging  # noqa: E402
import re  # noqa: E402

import yaml  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402

from pipelines.artifacts import publish_stage  # noqa: E402
from pipelines.lock import pipeline_lock  # noqa: E402
from pipelines.vocabulary_events import announce_vocabulary, vocabulary_state  # noqa: E402
from sdl.config import ParamsError, check_params, load_params  # noqa: E402
from sdl.data.kinds import check_download_options  # noqa: E402
from sdl.safety.errors import UserError, run_command  # noqa: E402

# Stages that talk to the outside world (downloads) or to a server (the MLflow registry):
# only they are retried. A failed local computation would fail the same way again.
RETRIES = {"download": 3, "register": 3}
RETRY_DELAYS = [10, 30, 90]


class StageFailed(UserError):
    """A stage of the pipeline failed; the message is the stage's own error line."""

    def __init__(self, stage: str, dataset: str, exit_status: int | None, line: str) -> None:
        super().__init__(f"{stage}@{dataset} failed: {line}")
        # a stage exits 3 for invalid params: retrying cannot help
        self.retryable = exit_status != 3


def _failure_line(stage: str, lines: list[str]) -> tuple[int | None, str]:
    """The stage's exit status (from DVC's ERROR line) and its own error line (else DVC's)."""
    status = None
    for line in lines:
        match = re.search(r"exited with (-?\d+)", line)
        if line.startswith("ERROR:") and match:
            status = int(match.group(1))
    own = [line for line in lines if line.startswith(f"{stage}: error:")]
    logged = [line.split(" ERROR ", 1)[1] for line in lines if " ERROR " in line and not line.startswith("ERROR:")]
    dvc = [line for line in lines if line.startswith("ERROR:")]
    return status, (own or logged or dvc or lines[-1:] or ["no output"])[-1]


def _retry_unless_hopeless(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Prefect retry condition: retry a failed stage unless its params are invalid."""
    try:
        state.result()
    except StageFailed as error:
        return error.retryable
    except Exception:
        return True
    return False


class _NoUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed run with its traceback; for a user error (a stage that failed
    with its own message) that traceback is this module's, so the line alone is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_user_error_tracebacks() -> None:
    """Install :class:`_NoUserErrorTracebacks` on the handlers that print or ship Prefect's logs."""
    seen = _NoUserErrorTracebacks()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _NoUserErrorTracebacks) for f in handler.filters):
                handler.addFilter(seen)


def check_project_params(root: Path, dataset: str | None = None) -> None:
    """Check params.yaml (every dataset, the kinds' options too, and that ``dataset`` is one
    of its datasets) before any stage runs."""
    sections = check_params(load_params(root / "params.yaml"))
    check_download_options(sections)
    names = [s.name for s in sections]
    if dataset is not None and dataset not in names:
        raise ParamsError(f"--dataset {dataset}: not one of the datasets in params.yaml {names}; add it to `datasets`")


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
        status, line = _failure_line(stage, lines)
        raise StageFailed(stage, dataset, status, line)
    ran = any(line.startswith(f"Running stage '{stage}@{dataset}'") for line in lines)
    return "ran" if ran else "up to date"


def stage_task(stage: str):  # type: ignore[no-untyped-def]
    """A Prefect task named after the DVC stage, with retries where the stage needs them."""
    return task(
        run_stage, name=stage, task_run_name=f"{stage}-{{dataset}}",
        retries=RETRIES.get(stage, 0), retry_delay_seconds=RETRY_DELAYS if stage in RETRIES else 0,
        retry_condition_fn=_retry_unless_hopeless,
    )


@flow(name="rebuild", log_prints=True)
def rebuild(dataset: str = "embedded", force: bool = False, root: str | None = None) -> dict[str, str]:
    """Bring every stage of ``dataset`` up to date, in dvc.yaml order; return what each did."""
    logger = get_run_logger()
    quiet_user_error_tracebacks()
    project = Path(root) if root else PROJECT_ROOT
    check_project_params(project, dataset)
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
    parser.add_argument("--verbose", action="store_true", help="show tracebacks of errors (or SDL_VERBOSE=1)")
    args = parser.parse_args(argv)

    def run() -> int:
        check_project_params(PROJECT_ROOT, args.dataset)  # before Prefect starts anything
        outcome = rebuild(dataset=args.dataset, force=args.force)
        print("\n".join(f"{stage:>9}: {what}" for stage, what in outcome.items()))
        return 0

    return run_command(run, "pipelines.rebuild", argv)


if __name__ == "__main__":
    raise SystemExit(main())
