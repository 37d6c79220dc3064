"""S3 downloads (public buckets read unsigned), with the HTTP downloads' retry and resume."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sdl.data.fetch.errors import FetchError, Validator
from sdl.data.fetch.http import _CONTENT_RANGE
from sdl.data.fetch.transfer import (
    CHUNK_SIZE,
    Outcome,
    _Permanent,
    _retry_loop,
    _Retryable,
)

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
