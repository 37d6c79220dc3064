"""HTTP(S) downloads: resumable (Range), retried (5xx, 429 with Retry-After, broken
connections, truncated bodies), verified, atomic."""

from __future__ import annotations

import contextlib
import email.utils
import re
import threading
import time
from pathlib import Path

import requests

from sdl.data.fetch.errors import Validator
from sdl.data.fetch.transfer import (
    CHUNK_SIZE,
    Outcome,
    _Permanent,
    _retry_loop,
    _Retryable,
)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def _http_once(session: requests.Session, url: str, partial: Path, timeout: float) -> None:
    """One GET into ``partial``, resuming from its size with a Range request."""
    start = partial.stat().st_size if partial.exists() else 0
    # identity: byte ranges and Content-Length must count the stored bytes, not gzip ones.
    headers = {"Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise _Retryable(f"connection failed: {error}") from None
    except requests.RequestException as error:
        raise _Permanent(f"request failed: {error}") from None
    with response:
        status = response.status_code
        if status == 416 and start:
            match = _UNSATISFIED_RANGE.search(response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == start:
                return  # the partial file already holds every byte
            partial.unlink(missing_ok=True)
            raise _Retryable("range not satisfiable; restarting from the beginning")
        if status == 429 or 500 <= status < 600:
            raise _Retryable(f"HTTP {status} {response.reason}", _retry_after_seconds(response.headers.get("Retry-After")))
        if status not in (200, 206):
            raise _Permanent(f"HTTP {status} {response.reason}")
        mode, offset = "wb", 0
        if status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                partial.unlink(missing_ok=True)
                raise _Retryable(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
            mode, offset = "ab", start
        # status 200 while resuming: the server ignored Range, so rewrite from byte 0.
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        received = 0
        try:
            with open(partial, mode) as handle:
                for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
                    handle.write(chunk)
                    received += len(chunk)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            raise _Retryable(f"connection broken after {offset + received} bytes: {error}") from None
        if expected is not None and received != expected:
            raise _Retryable(f"truncated body: {received} of {expected} bytes (Content-Length)")


def fetch_url(
    url: str,
    dest: str | Path,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60,
    session: requests.Session | None = None,
    validate: Validator | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming, retrying, verifying); return ``dest``.

    Retries 5xx, 429 (honouring Retry-After), connection errors and truncated bodies with
    exponential backoff; other 4xx fail at once. A ``dest`` already complete is not fetched
    again. Raises :class:`FetchError` naming the URL and the last failure.
    """
    _fetch_url(url, Path(dest), expected_size=expected_size, sha256=sha256, md5=md5, retries=retries,
               backoff=backoff, timeout=timeout, session=session, validate=validate)
    return Path(dest)


def _fetch_url(url: str, dest: Path, *, expected_size: int | None = None, sha256: str | None = None,
               md5: str | None = None, retries: int = 5, backoff: float = 0.5, timeout: float = 60,
               session: requests.Session | None = None, validate: Validator | None = None) -> Outcome:
    active = session or _thread_session()
    return _retry_loop(url, dest, lambda partial: _http_once(active, url, partial, timeout),
                       expected_size=expected_size, sha256=sha256, md5=md5, retries=retries,
                       backoff=backoff, validate=validate)


_THREAD = threading.local()


def _thread_session() -> requests.Session:
    """This thread's requests.Session: connections are reused across files, and a session is
    never shared between threads (requests does not promise that is safe)."""
    if not hasattr(_THREAD, "session"):
        _THREAD.session = requests.Session()
    return _THREAD.session
