"""When a download is finished: a ``.partial`` file verified (size, checksums, content) and
renamed over its destination."""

from __future__ import annotations

import os
from pathlib import Path

from sdl.data.fetch.errors import FetchError, Validator
from sdl.safety.atomic import file_digest


def _partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _mismatch(path: Path, expected_size: int | None, sha256: str | None, md5: str | None) -> str | None:
    """Why ``path`` does not match the expectations, or None when it does."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"size {size} != expected {expected_size}"
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None:
            actual = file_digest(path, algorithm)
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
