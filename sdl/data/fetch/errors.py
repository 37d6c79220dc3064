"""What a download can fail with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sdl.safety.errors import UserError
from sdl.safety.redaction import redact

Validator = Callable[[Path], object]  # raises to reject the file; its result is ignored


class FetchError(UserError, RuntimeError):
    """A download failed for good; the message names the source and what went wrong (with any
    credentials in the source's URL masked: the message ends up in logs and reports)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{redact(source)}: {redact(reason)}")
        self.source = source
        self.reason = reason


class UnsafeArchiveError(UserError, ValueError):
    """An archive entry would land outside the destination (absolute path, ``..``, link)."""
