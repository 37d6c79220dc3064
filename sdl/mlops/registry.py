"""Registering SDL models in the MLflow model registry (aliases, not legacy stages).

Every trained model becomes a new version of ``sdl-<dataset>`` holding the alias
``challenger``. The promotion gate (:func:`run_gate`) scores the challenger and the current
``champion`` from their *registered* artifacts (weights + config) on the same test images
with the same (current) vocabulary, compares a primary metric and moves ``champion`` only when
the challenger wins by more than zero and by at least a minimum margin; the first model
becomes champion. Either way the decision is written to the version (tags ``gate.*`` and its
description) and returned.

Champion changes (gate, by hand, rollback) are explicit actions: each one moves the alias,
tags the version (``champion.*``) and is appended to the registered model's tags
``sdl.champion_history`` (JSON log) and ``sdl.champion_stack`` (the versions that were
champion, most recent last), which is what :func:`rollback` pops.

Champion changes are serialised by a lock (:func:`champion_lock`, next to a sqlite store, in
the temp folder for a server): the gate holds it from reading the champion until it has
promoted, so a hand promotion or rollback never interleaves with it. It covers processes on
one machine; MLflow offers no lock for a tracking server shared by several machines.

Consistency: a version is created only after its model is fully logged, with the tag
``sdl.registration=incomplete``; it becomes ``complete`` once the ``challenger`` alias points
at it. If anything fails in between, the version is deleted (and the previous challenger
restored); if even that fails (the store went away), the version keeps its ``incomplete`` /
``failed`` tag, never holds an alias, and :func:`promote` refuses it.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sdl.mlops import run_context, tracking
from sdl.mlops.model_logging import log_pyfunc
from sdl.mlops.pyfunc import VOCABULARY_FILE
from sdl.safety.errors import UserError
from sdl.safety.locks import LockBusy, file_lock

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
STATUS_TAG = "sdl.registration"
HISTORY_TAG = "sdl.champion_history"
STACK_TAG = "sdl.champion_stack"
# A hand promotion waits this long for a gate under way (which evaluates two models); the gate
# waits longer for a hand promotion or rollback (a few registry calls).
PROMOTE_WAIT_SECONDS = 60.0
GATE_WAIT_SECONDS = 600.0
_MAX_TAG_CHARS = 4000  # MLflow stores tag values up to 5000 characters (server stores may limit more)


class RegistrationError(UserError, RuntimeError):
    """Registering or moving an alias failed; the message says what state was left."""


class ChampionBusy(LockBusy):
    """Another champion change (gate, promotion, rollback) of the same model is under way."""


def champion_lock_path(name: str, uri: str | None = None) -> Path:
    """The lock file that serialises champion changes of ``name`` in the store ``uri``."""
    uri = uri or tracking.tracking_uri()
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent / "locks"
    else:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / "sdl-locks" / digest
    return folder / f"{name}.champion.lock"


def champion_lock(name: str, holder: str, wait_seconds: float = PROMOTE_WAIT_SECONDS):  # type: ignore[no-untyped-def]
    """Context manager: hold the champion lock of ``name``; :class:`ChampionBusy` after
    ``wait_seconds`` if another change keeps it."""
    return file_lock(
        champion_lock_path(name), f"{holder} (by {getpass.getuser()})", wait_seconds,
        other=f"another champion change of {name}", error=ChampionBusy,
    )


def _client():  # type: ignore[no-untyped-def]
    return tracking.client()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_version(
    run_id: str,
    name: str,
    model_dir: str | Path,
    tags: Sequence[str],
    vectors: np.ndarray,
    unseen: Sequence[str],
    example_image: str | Path | None = None,
    version_tags: Mapping[str, str] | None = None,
    wordvec_source: Mapping[str, Any] | None = None,
    wordvec_source_name: str | None = None,
    model_tags: Mapping[str, str] | None = None,
) -> int:
    """Log the model (``sdl.mlops.model_logging.log_pyfunc``, a LoggedModel tagged ``model_tags``),
    register it as a new version of ``name`` holding ``challenger`` (:func:`register_logged_model`);
    return the version. Raises RegistrationError (after cleaning up) when that fails."""
    uri = log_pyfunc(run_id, model_dir, tags, vectors, unseen, example_image, wordvec_source, wordvec_source_name,
                     model_tags=model_tags)
    return register_logged_model(uri, name, run_id, version_tags or {})


def register_logged_model(model_uri: str, name: str, run_id: str, version_tags: Mapping[str, str] | None = None) -> int:
    """Register a fully logged model as a new version of ``name`` holding ``challenger``.
    The version is either complete or removed (or, when the store fails, left marked
    ``incomplete``/``failed`` without an alias); raises RegistrationError then."""
    mlflow = tracking.configured_mlflow()
    client = mlflow.MlflowClient()
    previous_challenger = current_alias_version(name, CHALLENGER)
    started = int(time.time() * 1000)
    tags = {str(k): str(v) for k, v in (version_tags or {}).items()}
    tags[STATUS_TAG] = "incomplete"
    try:
        registered = mlflow.register_model(model_uri, name, tags=tags)
    except Exception as error:
        leftovers = _remove_incomplete(name, run_id, since_ms=started)
        raise RegistrationError(
            f"registering {model_uri} as {name} failed ({error}); removed incomplete versions {leftovers or 'none'}"
        ) from error
    version = int(registered.version)
    try:
        client.set_registered_model_alias(name, CHALLENGER, str(version))
        client.set_model_version_tag(name, str(version), STATUS_TAG, "complete")
    except Exception as error:
        state = _undo_version(name, version, previous_challenger)
        raise RegistrationError(f"{name} version {version}: setting alias {CHALLENGER!r} failed ({error}); {state}") from error
    log.info("registered %s version %d as %s", name, version, CHALLENGER)
    return version


def _undo_version(name: str, version: int, previous_challenger: int | None) -> str:
    """Remove a half-registered version (or mark it failed); say what was left."""
    client = _client()
    try:
        client.delete_model_version(name, str(version))
        state = f"version {version} deleted"
    except Exception as delete_error:  # the store itself is failing: mark it, if we can
        try:
            client.set_model_version_tag(name, str(version), STATUS_TAG, "failed")
            state = f"version {version} could not be deleted ({delete_error}); tagged {STATUS_TAG}=failed"
        except Exception:
            state = (
                f"version {version} could not be deleted or tagged ({delete_error}); it keeps "
                f"{STATUS_TAG}=incomplete and must not be used"
            )
        with contextlib.suppress(Exception):
            if current_alias_version(name, CHALLENGER) == version:
                client.delete_registered_model_alias(name, CHALLENGER)
    if previous_challenger is not None and previous_challenger != version:
        try:
            client.set_registered_model_alias(name, CHALLENGER, str(previous_challenger))
        except Exception:
            state += f"; could not restore {CHALLENGER} to version {previous_challenger}"
    return state


def _remove_incomplete(name: str, run_id: str, since_ms: int) -> list[int]:
    """Delete versions of ``run_id`` left ``incomplete`` by a failed register call."""
    removed = []
    try:
        for version in tracking.iter_registered_versions(name):
            if (
                version.run_id == run_id and int(version.creation_timestamp or 0) >= since_ms - 1000
                and (version.tags or {}).get(STATUS_TAG) == "incomplete"
            ):
                _client().delete_model_version(name, version.version)
                removed.append(int(version.version))
    except Exception:  # the registry may be unreachable: nothing more to do here
        pass
    return removed


def current_alias_version(name: str, alias: str) -> int | None:
    """The version holding ``alias``, or None."""
    client = _client()
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except Exception:  # MlflowException when the alias or the model does not exist
        return None


def version_aliases(name: str, version: int) -> list[str]:
    """Aliases held by a version, sorted."""
    return sorted(_client().get_model_version(name, str(version)).aliases or [])


def set_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` of model ``name`` at ``version``."""
    _client().set_registered_model_alias(name, alias, str(version))


# --------------------------------------------------------------------------- champion actions


def _model_tag(name: str, key: str, default: str) -> str:
    tags = _client().get_registered_model(name).tags or {}
    return tags.get(key, default)


def champion_history(name: str) -> list[dict[str, Any]]:
    """The log of champion changes, oldest first (trimmed to the most recent entries)."""
    return list(json.loads(_model_tag(name, HISTORY_TAG, "[]")))


def champion_stack(name: str) -> list[int]:
    """Versions that were champion, most recent last (what rollback pops)."""
    return [int(v) for v in json.loads(_model_tag(name, STACK_TAG, "[]"))]


def _fit(entries: list[Any]) -> str:
    text = json.dumps(entries, separators=(",", ":"))
    while len(text) > _MAX_TAG_CHARS and len(entries) > 1:
        entries = entries[1:]
        text = json.dumps(entries, separators=(",", ":"))
    return text


def _record(name: str, action: str, version: int, previous: int | None, reason: str, stack: list[int]) -> None:
    client = _client()
    when = _now()
    entry = {"time": when, "action": action, "version": version, "previous": previous,
             "reason": reason[:300], "user": getpass.getuser()}
    client.set_registered_model_tag(name, HISTORY_TAG, _fit([*champion_history(name), entry]))
    client.set_registered_model_tag(name, STACK_TAG, _fit(stack))
    for key, value in {"champion.action": action, "champion.since": when, "champion.reason": reason[:500]}.items():
        client.set_model_version_tag(name, str(version), key, value)
    if previous is not None and previous != version:
        try:
            client.set_model_version_tag(name, str(previous), "champion.until", f"{when} ({action} of version {version})")
        except Exception:  # the previous version may have been deleted
            pass
    log.info("%s: champion %s -> %d (%s): %s", name, previous, version, action, reason)


def _check_usable(name: str, version: int) -> None:
    try:
        mv = _client().get_model_version(name, str(version))
    except Exception as error:
        raise RegistrationError(f"{name} has no version {version} ({error})") from None
    status = (mv.tags or {}).get(STATUS_TAG, "complete")
    if status != "complete":
        raise RegistrationError(f"{name} version {version} is {status} (half registered): it cannot be champion")


def promote(
    name: str, version: int, reason: str, action: str = "promote", wait_seconds: float = PROMOTE_WAIT_SECONDS
) -> int | None:
    """Make ``version`` the champion (an explicit, logged action); return the previous one.
    Promoting the current champion changes nothing. Holds the champion lock (waits up to
    ``wait_seconds`` for it, then raises :class:`ChampionBusy`)."""
    with champion_lock(name, f"{action} of version {version}", wait_seconds):
        return _promote_locked(name, version, reason, action)


def _promote_locked(name: str, version: int, reason: str, action: str) -> int | None:
    _check_usable(name, version)
    previous = current_alias_version(name, CHAMPION)
    if previous == version:
        log.info("%s: version %d is already %s", name, version, CHAMPION)
        return previous
    stack = champion_stack(name)
    if previous is not None and (not stack or stack[-1] != previous):
        stack.append(previous)  # champion set outside these tools: keep it rollback-able
    set_alias(name, CHAMPION, version)
    try:
        _record(name, action, version, previous, reason, [*stack, version])
    except Exception as error:
        try:
            if previous is None:
                _client().delete_registered_model_alias(name, CHAMPION)
            else:
                set_alias(name, CHAMPION, previous)
            state = "alias restored"
        except Exception:
            state = f"alias left on version {version}"
        raise RegistrationError(f"{name}: recording the promotion of version {version} failed ({error}); {state}") from error
    return previous


def rollback(name: str, reason: str = "", wait_seconds: float = PROMOTE_WAIT_SECONDS) -> tuple[int | None, int]:
    """Give ``champion`` back to the previous champion; return (from, to) versions.

    Pops the current champion off the champion stack; versions deleted or no longer
    complete since are skipped. Raises RegistrationError when there is none to go back to.
    Holds the champion lock, as :func:`promote`."""
    with champion_lock(name, "rollback", wait_seconds):
        return _rollback_locked(name, reason)


def _rollback_locked(name: str, reason: str) -> tuple[int | None, int]:
    current = current_alias_version(name, CHAMPION)
    stack = champion_stack(name)
    while stack and stack[-1] == current:
        stack.pop()
    while stack:
        try:
            _check_usable(name, stack[-1])
            break
        except RegistrationError:
            stack.pop()
    if not stack:
        raise RegistrationError(f"{name}: no previous champion to roll back to (champion is version {current})")
    target = stack[-1]
    set_alias(name, CHAMPION, target)
    text = reason or f"rollback from version {current}"
    try:
        _record(name, "rollback", target, current, text, stack)
    except Exception as error:
        if current is not None:
            set_alias(name, CHAMPION, current)
        raise RegistrationError(f"{name}: recording the rollback failed ({error}); champion left on {current}") from error
    return current, target


# --------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class VersionInfo:
    """A version as ``sdl models list`` shows it."""

    version: int
    aliases: list[str]
    status: str
    created: str
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    commit: str = ""  # the version's mlflow.source.git.commit, else its run's (legacy: git_commit)


@dataclass(frozen=True)
class ChampionState:
    """What the champion was trained and registered with (for the retraining decision)."""

    version: int
    tags: list[str]  # its registered (serving) vocabulary: the dataset's tags and the extra ones
    labelled_tags: list[str]  # the dataset's tags it was trained with (seen) and evaluated on (unseen)
    labelled_images: int
    run_id: str


def champion_state(name: str) -> ChampionState | None:
    """The champion's vocabulary and labelled tags (from its registered artifacts) and its
    labelled-image count (from its lineage tags), or None when ``name`` has no champion."""
    import pandas as pd
    import yaml

    version = current_alias_version(name, CHAMPION)
    if version is None:
        return None
    mv = _client().get_model_version(name, str(version))
    root = f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory() as scratch:
        tags = pd.read_parquet(tracking.download_artifacts(f"{root}/artifacts/{VOCABULARY_FILE}", scratch),
                               columns=["tag"])["tag"].tolist()
        mlmodel = yaml.safe_load(tracking.download_artifacts(f"{root}/MLmodel", scratch).read_text(encoding="utf-8"))
        model_path = mlmodel["flavors"]["python_function"]["artifacts"]["model"]["path"]
        lineage = json.loads(tracking.download_artifacts(f"{root}/{model_path}/tags.json", scratch).read_text())
    images = int((mv.tags or {}).get("labelled_images", "0"))
    return ChampionState(version=version, tags=tags, labelled_tags=[*lineage["seen"], *lineage["unseen"]],
                         labelled_images=images, run_id=mv.run_id or "")


def version_of_run(name: str, run_id: str) -> VersionInfo | None:
    """The complete version of ``name`` registered from ``run_id``, if there is one."""
    for info in list_versions(name):
        if info.run_id == run_id and info.status == "complete":
            return info
    return None


def list_versions(name: str) -> list[VersionInfo]:
    """Versions of ``name``, newest first, with the evaluation metrics of their runs."""
    client = _client()
    out = []
    for mv in tracking.iter_registered_versions(name):
        metrics: dict[str, float] = {}
        commit = run_context.commit_of(dict(mv.tags or {}))
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
                metrics = {
                    k: float(v) for k, v in run.data.metrics.items()
                    if k.split(".", 1)[0] in ("zsl", "gzsl") and ".paper_" not in k and ".delta_" not in k
                }
                commit = commit or run_context.commit_of(dict(run.data.tags))
            except Exception:  # the run may have been deleted
                pass
        aliases = list(mv.aliases or [])
        if not aliases:  # some stores leave aliases out of search results
            aliases = list(client.get_model_version(name, mv.version).aliases or [])
        created = datetime.fromtimestamp(int(mv.creation_timestamp or 0) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        out.append(VersionInfo(
            version=int(mv.version), aliases=sorted(aliases), status=(mv.tags or {}).get(STATUS_TAG, "complete"),
            created=created, run_id=mv.run_id or "", metrics=metrics, tags=dict(mv.tags or {}), commit=commit,
        ))
    return out
