"""Naming sources (URL, ``s3://``, local path) and placing local files, without any network code."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from sdl.safety.atomic import atomic_write_stream


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


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` as a hard link (no extra disk), else an atomic copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.link")
    try:
        os.link(source, temporary)
    except OSError:  # another filesystem, or links unsupported
        with open(source, "rb") as handle:
            atomic_write_stream(handle, target)
        return
    os.replace(temporary, target)
