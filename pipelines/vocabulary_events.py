"""The Prefect event ``sdl.vocabulary.changed``, emitted after `embed` when the served
vocabulary changed, and the trigger that makes the retraining deployment run on it.

The event's resource is ``sdl.vocabulary.<dataset>``; its payload says what changed (tags
added and removed, the new size and hash). The retraining deployment of a dataset
(pipelines/retrain.py ``serve`` / ``deploy``) is triggered by it as well as by its cron
schedule, so a grown vocabulary is looked at without waiting for the night. The rebuild flow
emits it when it has finished and released the project lock (a retraining started at once
would otherwise find the lock held); the retrain flow does not (it is already looking at the
new vocabulary).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EVENT = "sdl.vocabulary.changed"


def resource_id(dataset: str) -> str:
    return f"sdl.vocabulary.{dataset}"


def vocabulary_state(root: Path, dataset: str) -> list[str] | None:
    """The served tags of ``dataset`` (``data/<dataset>/vocabulary.parquet``), None before any embed."""
    import pandas as pd

    path = root / "data" / dataset / "vocabulary.parquet"
    if not path.is_file():
        return None
    return [str(t) for t in pd.read_parquet(path, columns=["tag"])["tag"]]


def vocabulary_change(before: list[str] | None, after: list[str] | None) -> dict[str, Any] | None:
    """What changed between two tag lists (None: nothing, or no vocabulary yet)."""
    if after is None or before == after:
        return None
    from sdl.text.vocabulary import vocabulary_hash

    old = set(before or [])
    return {
        "added": [t for t in after if t not in old], "removed": sorted(old - set(after)),
        "size": len(after), "hash": vocabulary_hash(after), "first": before is None,
    }


def announce_vocabulary(dataset: str, root: Path, before: list[str] | None) -> dict[str, Any] | None:
    """Emit :data:`EVENT` if the vocabulary differs from ``before``; return the payload sent."""
    from prefect import get_run_logger
    from prefect.events import emit_event

    change = vocabulary_change(before, vocabulary_state(root, dataset))
    if change is None:
        return None
    emit_event(event=EVENT, resource={"prefect.resource.id": resource_id(dataset), "sdl.dataset": dataset},
               payload=change)
    get_run_logger().info("%s: vocabulary changed (%d tags, %d added, %d removed): event %s emitted", dataset,
                          change["size"], len(change["added"]), len(change["removed"]), EVENT)
    return change


def retrain_trigger(dataset: str) -> Any:
    """A deployment trigger: run the retraining deployment of ``dataset`` on :data:`EVENT`."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=f"retrain-{dataset}-on-vocabulary-change", expect={EVENT},
        match={"prefect.resource.id": resource_id(dataset)}, parameters={"dataset": dataset},
    )
