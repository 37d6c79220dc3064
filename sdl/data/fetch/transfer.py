"""The retry loop every transfer runs in: resume, verify, back off, give up with a clear error."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from sdl.data.fetch.errors import FetchError, Validator
from sdl.data.fetch.verify import _finish, _mismatch, _partial_path, is_complete
from sdl.safety.redaction import redact

log = logging.getLogger(__name__)


CHUNK_SIZE = 1 << 16


MAX_WAIT_S = 300.0  # cap on one wait (a server asking for an hour would stall the whole run)


Outcome = Literal["fetched", "skipped"]


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Permanent(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _wait(attempt: int, backoff: float, retry_after: float | None) -> None:
    """Exponential backoff with jitter (so parallel workers do not retry in lockstep); a
    server's Retry-After wins when it asks for longer."""
    delay = backoff * (2 ** (attempt - 1))
    delay += random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    time.sleep(min(delay, MAX_WAIT_S))


def _retry_loop(
    source: str,
    dest: Path,
    once: Callable[[Path], None],
    *,
    expected_size: int | None,
    sha256: str | None,
    md5: str | None,
    retries: int,
    backoff: float,
    validate: Validator | None,
) -> Outcome:
    """Run ``once(partial)`` until the partial file is complete and verified, then rename it."""
    if is_complete(dest, expected_size, sha256, md5):
        return "skipped"
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(dest)
    if expected_size is not None and partial.exists() and partial.stat().st_size > expected_size:
        partial.unlink()  # longer than the file can be: not a prefix of it
    last = "no attempt made"
    retry_after: float | None = None
    for attempt in range(retries + 1):
        if attempt:
            _wait(attempt, backoff, retry_after)
        retry_after = None
        try:
            once(partial)
        except _Retryable as error:
            last, retry_after = error.reason, error.retry_after
            log.debug("%s: attempt %d failed: %s", redact(source), attempt + 1, redact(last))
            continue
        except _Permanent as error:
            partial.unlink(missing_ok=True)
            raise FetchError(source, error.reason) from None
        problem = _mismatch(partial, expected_size, sha256, md5)
        if problem is not None:
            # A resumed transfer may have glued two different versions: start over.
            partial.unlink(missing_ok=True)
            last = f"verification failed: {problem}"
            continue
        _finish(partial, dest, validate, source)
        return "fetched"
    raise FetchError(source, f"failed after {retries + 1} attempts; last error: {last}")
