"""One location to a local file (:func:`obtain`), and many files at once (:func:`fetch_many`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sdl.data.fetch.errors import FetchError, Validator
from sdl.data.fetch.http import _fetch_url, fetch_url
from sdl.data.fetch.locations import local_path
from sdl.data.fetch.s3 import _fetch_s3, fetch_s3
from sdl.data.fetch.transfer import Outcome
from sdl.safety.redaction import redact

log = logging.getLogger(__name__)


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
