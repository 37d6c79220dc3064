"""One pipeline run at a time per project: an exclusive lock on ``.state/locks/pipeline.lock``.

Both flows take it, so a scheduled retraining never runs beside a rebuild (or itself). The
lock is an OS file lock (``fcntl.flock``): it is released when its holder exits, even when it
is killed, so a crash never leaves the project locked. The file records who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path


class PipelineBusy(RuntimeError):
    """Another pipeline run holds the project's lock."""


def lock_path(root: Path) -> Path:
    return root / ".state" / "locks" / "pipeline.lock"


@contextlib.contextmanager
def pipeline_lock(root: Path, holder: str, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Hold the project lock while the block runs; wait up to ``wait_seconds`` for it, then
    raise :class:`PipelineBusy` naming the run that holds it."""
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    owner = handle.read().strip() or "an unknown run"
                    raise PipelineBusy(f"another pipeline run holds {path}: {owner}; try again when it ends") from None
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "holder": holder, "pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }))
        handle.flush()
        try:
            yield path
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
