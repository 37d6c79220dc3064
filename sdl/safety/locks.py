"""Exclusive file locks that name their holder and vanish with it.

An OS file lock (``fcntl.flock``) is released when its holder exits, even when it is killed,
so a crash never leaves anything locked. The file records who holds it, so a refusal can say
so. Re-entrant within a process: a block that already holds a lock may take it again (the
promotion gate holds the champion lock and calls :func:`sdl.mlops.registry.promote`, which takes it
too).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sdl.safety.errors import UserError


class LockBusy(UserError, RuntimeError):
    """Another process holds the lock."""


_held: dict[str, int] = {}  # lock files this process holds -> depth
_held_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(
    path: str | Path,
    holder: str,
    wait_seconds: float = 0.0,
    *,
    other: str = "another process",
    error: type[LockBusy] = LockBusy,
) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` while the block runs.

    Waits up to ``wait_seconds`` for it, then raises ``error`` saying that ``other`` holds
    it, with the holder recorded in the file."""
    path = Path(path)
    key = str(path.resolve())
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return
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
                    owner = handle.read().strip() or "an unknown process"
                    raise error(f"{other} holds {path}: {owner}; try again when it ends") from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "holder": holder, "pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }))
        handle.flush()
        with _held_guard:
            _held[key] = 1
        try:
            yield path
        finally:
            with _held_guard:
                del _held[key]
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
