"""One pipeline run at a time per project: an exclusive lock on ``.state/locks/pipeline.lock``.

Both flows take it, so a scheduled retraining never runs beside a rebuild (or itself). It is
an :func:`sdl.safety.locks.file_lock`: released when its holder exits, even when killed, and the
file records who holds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sdl.safety.locks import LockBusy, file_lock


class PipelineBusy(LockBusy):
    """Another pipeline run holds the project's lock."""


def lock_path(root: Path) -> Path:
    return root / ".state" / "locks" / "pipeline.lock"


@contextlib.contextmanager
def pipeline_lock(root: Path, holder: str, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Hold the project lock while the block runs; wait up to ``wait_seconds`` for it, then
    raise :class:`PipelineBusy` naming the run that holds it."""
    with file_lock(lock_path(root), holder, wait_seconds, other="another pipeline run", error=PipelineBusy) as path:
        yield path
