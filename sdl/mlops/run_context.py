"""Where a run comes from: MLflow's standard source tags, and DVC's experiment context.

MLflow's UI reads its own tags (``mlflow.source.git.commit``, ``mlflow.source.name``,
``mlflow.source.type``, ``mlflow.project.entryPoint``), so the runs carry those rather than tags
of our own. DVC tells a stage command what it runs for through the environment:
``DVC_STAGE`` (``train@embedded``) for every stage, and for ``dvc exp run`` (in the workspace,
``--temp`` or queued) ``DVC_EXP_NAME`` and ``DVC_EXP_BASELINE_REV`` (the commit the experiment
starts from). Runs of an experiment are tagged ``dvc.experiment`` and ``dvc.baseline_rev``, and
an experiment never moves ``champion`` unless its params ask for it
(``register.<dataset>.promote``, see :func:`promotion_allowed`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

EXPERIMENT_ENV = "DVC_EXP_NAME"
BASELINE_ENV = "DVC_EXP_BASELINE_REV"
STAGE_ENV = "DVC_STAGE"

COMMIT_TAG = "mlflow.source.git.commit"
DIRTY_TAG = "mlflow.source.git.dirty"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
ENTRY_POINT_TAG = "mlflow.project.entryPoint"
EXPERIMENT_TAG = "dvc.experiment"
BASELINE_TAG = "dvc.baseline_rev"
LEGACY_COMMIT_TAG = "git_commit"  # what versions registered before MLflow's tags carried


def experiment_name() -> str | None:
    """The DVC experiment this process runs for (``dvc exp run``), or None."""
    return os.environ.get(EXPERIMENT_ENV) or None


def git_state(cwd: str | Path = ".") -> tuple[str, bool]:
    """The commit checked out in ``cwd`` and whether tracked files differ from it; ``unknown``
    outside a git repository."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, bool(dirty)


def experiment_tags() -> dict[str, str]:
    """``dvc.experiment`` and ``dvc.baseline_rev`` inside a DVC experiment; empty otherwise."""
    name = experiment_name()
    if name is None:
        return {}
    return {EXPERIMENT_TAG: name, BASELINE_TAG: os.environ.get(BASELINE_ENV, "")}


def source_tags(module: str, cwd: str | Path = ".") -> dict[str, str]:
    """MLflow's source tags for a run made by ``module`` (``stages.train``): the commit, whether
    the tree was dirty (a DVC experiment changes params.yaml on top of its baseline), the source
    file and the entry point (the DVC stage when DVC runs it, else the module)."""
    commit, dirty = git_state(cwd)
    if commit == "unknown" and os.environ.get(BASELINE_ENV):  # an experiment's copy without git metadata
        commit, dirty = os.environ[BASELINE_ENV], True
    return {
        COMMIT_TAG: commit,
        DIRTY_TAG: str(dirty).lower(),
        SOURCE_NAME_TAG: module.replace(".", "/") + ".py",
        SOURCE_TYPE_TAG: "LOCAL",
        ENTRY_POINT_TAG: os.environ.get(STAGE_ENV) or module,
    }


def run_tags(module: str) -> dict[str, str]:
    """Source and experiment tags of a run made by ``module``."""
    return {**source_tags(module), **experiment_tags()}


def commit_of(tags: dict[str, str]) -> str:
    """The commit a run or version was made from: MLflow's tag, or the legacy ``git_commit``."""
    return tags.get(COMMIT_TAG) or tags.get(LEGACY_COMMIT_TAG) or ""


def promotion_allowed(promote: bool | str) -> tuple[bool, str]:
    """Whether the gate may move ``champion``, and why, for ``register.<dataset>.promote``:
    ``auto`` (the default) lets the gate decide except inside a DVC experiment; ``true`` lets
    it decide in experiments too; ``false`` never promotes (the gate still scores and records)."""
    name = experiment_name()
    if promote is True:
        return True, "register.promote is true"
    if promote is False:
        return False, "register.promote is false: the gate's verdict is recorded, champion stays"
    if name is not None:
        return False, (
            f"DVC experiment {name!r}: experiments do not move champion unless asked "
            "(dvc exp run -S register.<dataset>.promote=true); the gate's verdict is recorded"
        )
    return True, "the gate decides"
