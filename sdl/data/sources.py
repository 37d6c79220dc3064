"""How the dataset kinds get their files: :class:`NetworkSources`, the one "present / local /
fetch" image gatherer, and list files fetched or read in place.

Built from a kind's options (retries, backoff, timeout, workers, ``image_dir``, and for S3 the
``endpoint_url`` and ``unsigned`` a kind may add), so every kind fetches with one policy.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from sdl.data.fetch.archives import safe_extract
from sdl.data.fetch.jobs import FetchJob, fetch_many, obtain
from sdl.data.fetch.locations import link_or_copy, local_path
from sdl.data.fetch.verify import is_complete
from sdl.data.kinds.registry import GatherReport, WantedImage


class NetworkSources:
    """:class:`sdl.data.kinds.registry.Sources` over HTTP(S), S3, archives and local folders."""

    def __init__(self, options: Any = None, progress: bool = False) -> None:
        def option(name: str, default: Any) -> Any:
            return getattr(options, name, default) if options is not None else default

        self.progress = progress
        self.retry = {"retries": option("retries", 5), "backoff": option("backoff", 0.5),
                      "timeout": option("timeout", 60.0)}
        self.workers = option("workers", 16)
        self.image_dir = option("image_dir", None)
        self.s3 = {"endpoint_url": option("endpoint_url", None), "unsigned": option("unsigned", True)}

    def obtain(self, location: str, dest: Path) -> Path:
        return obtain(location, dest, **self.retry, **self.s3)

    def extract(self, archive: Path, dest: Path, members: Collection[str] | None = None) -> list[Path]:
        return safe_extract(archive, dest, members=members)

    def gather(
        self, wanted: Sequence[WantedImage], image_root: Path, validate: Callable[[Path], object] | None,
        *, validate_local: bool = True, desc: str = "images",
    ) -> GatherReport:
        """Present files stay; files in ``image_dir`` are linked (after ``validate`` when
        ``validate_local``); the rest are fetched in parallel from their URL or S3 object."""
        report = GatherReport()
        local_root = local_path(self.image_dir) if self.image_dir else None
        jobs = []
        for item in wanted:
            dest = image_root / item.relative
            if is_complete(dest):
                report.present += 1
                continue
            source = local_root / item.relative if local_root is not None else None
            if source is not None and source.is_file():
                if validate is not None and validate_local:
                    try:
                        validate(source)
                    except Exception as error:  # a bad local file is counted, like a failed fetch
                        report.rejected_local += 1
                        report.failures.append((item.relative, f"{source}: {error}"))
                        continue
                link_or_copy(source, dest)
                report.local += 1
            elif item.url is not None or (item.bucket is not None and item.key is not None):
                jobs.append(FetchJob(name=item.relative, dest=dest, url=item.url, bucket=item.bucket, key=item.key,
                                     endpoint_url=self.s3["endpoint_url"], unsigned=self.s3["unsigned"],
                                     validate=validate))
            else:
                report.unsourced.append(item.relative)
        fetched = fetch_many(jobs, workers=self.workers, progress=self.progress, desc=desc, **self.retry)
        report.present += fetched.skipped
        report.fetched, report.failed = fetched.fetched, fetched.failed
        report.failures += fetched.failures
        return report
