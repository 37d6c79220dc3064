"""Download primitives shared by the dataset kinds: HTTP(S) and S3 fetches that retry, resume
and verify, a parallel runner that keeps going past failures, and a safe archive extractor.

Every fetch streams into ``<dest>.partial`` and renames it over ``dest`` only once the bytes
are complete and verified, so ``dest`` existing means "finished": an interrupted run leaves a
``.partial`` to resume with a ``Range`` request, and a rerun skips finished files without
touching the network. Sources are named by *locations*: an ``http(s)://`` URL, an
``s3://bucket/key`` address, or a local path (``file://`` or plain), so local replicas and
already-downloaded folders stand in for the internet.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import logging
import os
import posixpath
import random
import re
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from sdl.io import atomic_open
from sdl.redaction import redact

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 16
MAX_WAIT_S = 300.0  # cap on one wait (a server asking for an hour would stall the whole run)
Outcome = Literal["fetched", "skipped"]
Validator = Callable[[Path], object]  # raises to reject the file; its result is ignored


class FetchError(RuntimeError):
    """A download failed for good; the message names the source and what went wrong (with any
    credentials in the source's URL masked: the message ends up in logs and reports)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{redact(source)}: {redact(reason)}")
        self.source = source
        self.reason = reason


class UnsafeArchiveError(ValueError):
    """An archive entry would land outside the destination (absolute path, ``..``, link)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Permanent(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- verification


def _partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, expected_size: int | None, sha256: str | None, md5: str | None) -> str | None:
    """Why ``path`` does not match the expectations, or None when it does."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"size {size} != expected {expected_size}"
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None:
            actual = _hash_file(path, algorithm)
            if actual.lower() != expected.lower():
                return f"{algorithm} {actual} != expected {expected}"
    return None


def is_complete(
    dest: str | Path, expected_size: int | None = None, sha256: str | None = None, md5: str | None = None
) -> bool:
    """Whether ``dest`` is a finished download: it exists (only a verified transfer is ever
    renamed there) and matches whatever size/checksums are given."""
    dest = Path(dest)
    return dest.is_file() and _mismatch(dest, expected_size, sha256, md5) is None


def _finish(partial: Path, dest: Path, validate: Validator | None, source: str) -> None:
    """fsync and rename a verified partial file over ``dest``; ``validate`` may reject it."""
    if validate is not None:
        try:
            validate(partial)
        except Exception as error:  # the content is wrong (e.g. an HTML page, a dead-photo placeholder)
            partial.unlink(missing_ok=True)
            raise FetchError(source, f"content rejected: {error}") from None
    with open(partial, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, dest)


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


# --------------------------------------------------------------------------- HTTP


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


# --------------------------------------------------------------------------- S3

_S3_CLIENTS: dict[tuple[str | None, bool, float], Any] = {}
_S3_LOCK = threading.Lock()
_S3_RETRYABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                       "ServiceUnavailable", "RequestTimeTooSkewed"}


def s3_client(endpoint_url: str | None = None, unsigned: bool = True, timeout: float = 60) -> Any:
    """A cached boto3 S3 client; ``unsigned`` sends anonymous requests (public buckets), so no
    credentials are looked up, sent or logged. botocore's own retries are off: the fetch loop
    retries with the same policy as HTTP downloads."""
    key = (endpoint_url, unsigned, timeout)
    with _S3_LOCK:  # boto3 session creation is not thread-safe; clients are
        if key not in _S3_CLIENTS:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            config = Config(
                signature_version=UNSIGNED if unsigned else None,
                retries={"total_max_attempts": 1, "mode": "standard"},  # 1 request: no botocore retry
                connect_timeout=timeout,
                read_timeout=timeout,
                max_pool_connections=64,
            )
            session = boto3.session.Session()
            region = session.region_name or "us-east-1"  # the public datasets' region
            _S3_CLIENTS[key] = session.client("s3", endpoint_url=endpoint_url, config=config, region_name=region)
        return _S3_CLIENTS[key]


def _s3_error(error: Exception) -> _Retryable | _Permanent:
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status == 429 or status >= 500 or code in _S3_RETRYABLE_CODES:
            return _Retryable(f"S3 {code or status}")
        return _Permanent(f"S3 {code or status}: {info.get('Message', '')}".rstrip(": "))
    return _Retryable(f"S3 connection error: {type(error).__name__}: {error}")


def _s3_once(client: Any, bucket: str, key: str, partial: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    start = partial.stat().st_size if partial.exists() else 0
    request: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if start:
        request["Range"] = f"bytes={start}-"
    try:
        response = client.get_object(**request)
    except ClientError as error:
        info = error.response.get("Error", {})
        if info.get("Code") == "InvalidRange" and start:
            if str(info.get("ActualObjectSize", "")) == str(start):
                return  # already complete
            partial.unlink(missing_ok=True)
            raise _Retryable("range not satisfiable; restarting from the beginning") from None
        raise _s3_error(error) from None
    except BotoCoreError as error:
        raise _s3_error(error) from None
    body = response["Body"]
    mode, offset = "wb", 0
    content_range = response.get("ContentRange")
    if start and content_range:
        match = _CONTENT_RANGE.search(content_range)
        if not match or int(match.group(1)) != start:
            partial.unlink(missing_ok=True)
            raise _Retryable(f"unexpected ContentRange {content_range!r}")
        mode, offset = "ab", start
    expected = response.get("ContentLength")
    received = 0
    try:
        with open(partial, mode) as handle:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                handle.write(chunk)
                received += len(chunk)
    except (BotoCoreError, ConnectionError, OSError) as error:
        raise _Retryable(f"connection broken after {offset + received} bytes: {type(error).__name__}: {error}") from None
    finally:
        body.close()
    if expected is not None and received != int(expected):
        raise _Retryable(f"truncated body: {received} of {expected} bytes (ContentLength)")


def fetch_s3(
    bucket: str,
    key: str,
    dest: str | Path,
    *,
    endpoint_url: str | None = None,
    unsigned: bool = True,
    expected_size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    check_remote_size: bool = False,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60,
    validate: Validator | None = None,
) -> Path:
    """Download ``s3://bucket/key`` to ``dest`` with the semantics of :func:`fetch_url`.

    ``check_remote_size`` asks head_object for the size first, so a finished file that no
    longer matches the object is fetched again; by default a finished file is trusted (one
    request saved per file, which matters for millions of images).
    """
    _fetch_s3(bucket, key, Path(dest), endpoint_url=endpoint_url, unsigned=unsigned, expected_size=expected_size,
              sha256=sha256, md5=md5, check_remote_size=check_remote_size, retries=retries, backoff=backoff,
              timeout=timeout, validate=validate)
    return Path(dest)


def _fetch_s3(bucket: str, key: str, dest: Path, *, endpoint_url: str | None = None, unsigned: bool = True,
              expected_size: int | None = None, sha256: str | None = None, md5: str | None = None,
              check_remote_size: bool = False, retries: int = 5, backoff: float = 0.5, timeout: float = 60,
              validate: Validator | None = None) -> Outcome:
    source = f"s3://{bucket}/{key}"
    client = s3_client(endpoint_url, unsigned, timeout)
    if check_remote_size and expected_size is None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            expected_size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except (ClientError, BotoCoreError) as error:
            problem = _s3_error(error)
            if isinstance(problem, _Permanent):
                raise FetchError(source, problem.reason) from None
    return _retry_loop(source, dest, lambda partial: _s3_once(client, bucket, key, partial),
                       expected_size=expected_size, sha256=sha256, md5=md5, retries=retries,
                       backoff=backoff, validate=validate)


# --------------------------------------------------------------------------- locations


def is_remote(location: str) -> bool:
    """Whether ``location`` is fetched (http, https, s3) rather than read from disk."""
    return urlsplit(location).scheme in ("http", "https", "s3")


def join_location(base: str, relative: str) -> str:
    """``relative`` under ``base`` (URL, s3:// or folder); a ``relative`` that is itself a URL or
    an absolute path is returned as it is."""
    if "://" in relative or os.path.isabs(relative):
        return relative
    if "://" in base:
        return base.rstrip("/") + "/" + relative.lstrip("/")
    return str(Path(base) / relative)


def local_path(location: str) -> Path:
    """The filesystem path of a local location (plain path or ``file://``)."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(parts.path)
    return Path(location)


def obtain(location: str, dest: str | Path, *, retries: int = 5, backoff: float = 0.5, timeout: float = 60,
           endpoint_url: str | None = None, unsigned: bool = True) -> Path:
    """The local file for ``location``: fetched to ``dest`` when remote (skipped when already
    complete), the file itself when local (read in place, never copied)."""
    scheme = urlsplit(location).scheme
    if scheme in ("http", "https"):
        return fetch_url(location, dest, retries=retries, backoff=backoff, timeout=timeout)
    if scheme == "s3":
        parts = urlsplit(location)
        return fetch_s3(parts.netloc, parts.path.lstrip("/"), dest, endpoint_url=endpoint_url, unsigned=unsigned,
                        retries=retries, backoff=backoff, timeout=timeout)
    path = local_path(location)
    if not path.is_file():
        raise FetchError(location, "no such local file")
    return path


# --------------------------------------------------------------------------- many at once


@dataclass(frozen=True)
class FetchJob:
    """One file to fetch: either ``url`` (http/https) or ``bucket`` + ``key`` (S3)."""

    name: str
    dest: Path
    url: str | None = None
    bucket: str | None = None
    key: str | None = None
    endpoint_url: str | None = None
    unsigned: bool = True
    expected_size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    validate: Validator | None = None


@dataclass
class FetchReport:
    """Counts of a :func:`fetch_many` run; ``failures`` lists ``(job name, reason)``."""

    fetched: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"fetched": self.fetched, "skipped": self.skipped, "failed": self.failed,
                "failures": list(self.failures)}


def fetch_many(
    jobs: Iterable[FetchJob],
    *,
    workers: int = 8,
    progress: bool = True,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60,
    desc: str = "fetch",
) -> FetchReport:
    """Fetch ``jobs`` in parallel threads with a progress bar; a failure is recorded and the
    others go on. Finished files are skipped, so a rerun resumes an interrupted run."""
    from tqdm import tqdm

    jobs = list(jobs)
    report = FetchReport()

    def run(job: FetchJob) -> Outcome:
        common = {"expected_size": job.expected_size, "sha256": job.sha256, "md5": job.md5, "retries": retries,
                  "backoff": backoff, "timeout": timeout, "validate": job.validate}
        if job.url is not None:
            return _fetch_url(job.url, job.dest, **common)
        if job.bucket is None or job.key is None:
            raise FetchError(job.name, "job has neither url nor bucket/key")
        return _fetch_s3(job.bucket, job.key, job.dest, endpoint_url=job.endpoint_url, unsigned=job.unsigned, **common)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress, leave=False) as bar:
        futures = {pool.submit(run, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                outcome = future.result()
            except FetchError as error:
                report.failed += 1
                report.failures.append((job.name, str(error)))
            except Exception as error:  # a bug or an OS error in one job must not stop the others
                report.failed += 1
                report.failures.append((job.name, redact(f"{type(error).__name__}: {error}")))
            else:
                if outcome == "fetched":
                    report.fetched += 1
                else:
                    report.skipped += 1
            bar.update(1)
    report.failures.sort()
    if report.failed:
        log.warning("%s: %d of %d files failed (first: %s)", desc, report.failed, len(jobs), report.failures[0][1])
    return report


# --------------------------------------------------------------------------- archives


def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    """The relative path of an archive entry, refusing absolute paths and ``..``."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or re.match(r"^[A-Za-z]:", cleaned):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} points outside the destination ('..')")
    if not parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an empty path")
    return PurePosixPath(*parts)


def _check_link(entry: PurePosixPath, target: str, archive: Path, name: str, relative_to_entry: bool) -> str:
    """A link target that stays inside the destination, else UnsafeArchiveError."""
    target = target.replace("\\", "/")
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
        raise UnsafeArchiveError(f"{archive}: link {name!r} -> {target!r} points to an absolute path")
    base = str(entry.parent) if relative_to_entry else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: link {name!r} -> {target!r} points outside the destination")
    return resolved


def _write_stream(source: Any, target: Path) -> None:
    with atomic_open(target, "wb") as handle:
        shutil.copyfileobj(source, handle, CHUNK_SIZE)


def safe_extract(archive: str | Path, dest: str | Path, *, members: Collection[str] | None = None) -> list[Path]:
    """Extract a zip or tar archive (any compression tarfile reads) into ``dest``.

    Every entry is checked before anything is written: absolute paths, ``..`` components,
    links pointing outside ``dest`` and device/fifo entries raise UnsafeArchiveError naming
    the entry. ``members`` limits extraction to those entry names (e.g. the images a small
    run needs from a 13 GB zip). Files already present with the right size are not
    rewritten, so an interrupted extraction resumes. Returns the paths of the wanted files.
    """
    archive, dest = Path(archive), Path(dest)
    wanted = None if members is None else {posixpath.normpath(m.replace("\\", "/")).lstrip("/") for m in members}
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            plan = []
            for info in zf.infolist():
                relative = _safe_member_path(info.filename, archive)
                mode = info.external_attr >> 16
                link = None
                if stat.S_ISLNK(mode):
                    link = _check_link(relative, zf.read(info).decode("utf-8"), archive, info.filename, True)
                plan.append((info, relative, link))
            for info, relative, link in plan:
                if wanted is not None and str(relative) not in wanted:
                    continue
                target = dest / relative
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if link is not None:
                    if not target.is_symlink():
                        os.symlink(posixpath.relpath(link, str(relative.parent)), target)
                elif not (target.is_file() and target.stat().st_size == info.file_size):
                    with zf.open(info) as source:
                        _write_stream(source, target)
                written.append(target)
        return written
    if not tarfile.is_tarfile(archive):
        raise UnsafeArchiveError(f"{archive}: neither a zip nor a tar archive")
    with tarfile.open(archive) as tf:
        entries = tf.getmembers()
        checked = []
        for member in entries:
            relative = _safe_member_path(member.name, archive)
            if member.issym():
                _check_link(relative, member.linkname, archive, member.name, True)
            elif member.islnk():
                _check_link(relative, member.linkname, archive, member.name, False)
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(f"{archive}: entry {member.name!r} is a device, fifo or other special file")
            checked.append((member, relative))
        for member, relative in checked:
            if wanted is not None and str(relative) not in wanted:
                continue
            target = dest / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.issym():
                if not target.is_symlink():
                    os.symlink(member.linkname, target)
            elif not (target.is_file() and not member.islnk() and target.stat().st_size == member.size):
                source = tf.extractfile(member)  # for a hard link: the linked file's data
                if source is None:
                    raise UnsafeArchiveError(f"{archive}: entry {member.name!r} has no data")
                with source:
                    _write_stream(source, target)
            written.append(target)
    return written


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` as a hard link (no extra disk), else an atomic copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.link")
    try:
        os.link(source, temporary)
    except OSError:  # another filesystem, or links unsupported
        with open(source, "rb") as handle:
            _write_stream(handle, target)
        return
    os.replace(temporary, target)


def sample_evenly(items: Sequence[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` items spread evenly over ``items`` (all of them when ``limit`` is None),
    so a small run still covers every folder, class and split of an ordered list."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    if limit == 1:
        return [items[0]]
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]
