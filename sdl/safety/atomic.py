"""Atomic file writes and small readers shared by the library and the stages.

Every output is written to a temporary file in the destination folder, flushed and fsynced,
then renamed over the target: a crash or a full disk leaves either the old file or the new
one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    if mode not in ("wb", "w"):
        raise ValueError("atomic_open writes only: mode 'wb' or 'w'")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if error.errno is not None and error.filename is None:
            # a full disk fails in write/fsync, whose errors name no file: name the target
            # (OSError(errno, ...) is the errno's subclass: PermissionError for EACCES, ...)
            raise OSError(error.errno, f"{error.strerror or error} (writing)", str(target)) from error
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder in a temporary sibling of ``path``; move it over ``path`` on success.

    The old folder stays in place until the new one is complete, so a crash or a full disk
    leaves the old folder (or, between two renames, none), never a half-written one; on an
    error the temporary folder is removed and the old folder is kept.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    staging.mkdir()  # not mkdtemp: its 0700 mode would become the output's
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file() and not file.is_symlink():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        old = None
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
        os.replace(staging, target)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_stream(source: IO[bytes], path: str | os.PathLike[str], chunk_size: int = 1 << 16) -> None:
    """Copy a readable binary stream to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        shutil.copyfileobj(source, handle, chunk_size)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_parquet(path: str | os.PathLike[str], table: pa.Table) -> None:
    """Write a pyarrow table to Parquet atomically."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """The hex digest of a file's bytes under a hashlib ``algorithm`` ("md5", "sha256", ...)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def file_md5(path: str | os.PathLike[str]) -> str:
    """MD5 of a file's bytes: the hash DVC records for a file output."""
    return file_digest(path, "md5")
