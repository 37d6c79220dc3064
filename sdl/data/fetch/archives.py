"""Safe extraction of zip and tar archives.

Tar entries are checked by the standard library's ``tarfile.data_filter`` (Python >= 3.11.4,
PEP 706): absolute paths, ``..``, links leaving the destination, device and fifo entries are
refused. Zip entries are checked here for the same path faults (zipfile sanitises names
silently instead of refusing them); a zip entry is always extracted as a plain file, never as
a link, as ``zipfile`` itself does. Every entry is checked before anything is written, and
each refusal names the archive and the entry.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
import zipfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from sdl.data.fetch.errors import UnsafeArchiveError
from sdl.safety.atomic import atomic_write_stream

# tarfile's refusals, as the reason our error gives
_TAR_REFUSALS: dict[type[Exception], str] = {
    tarfile.AbsolutePathError: "has an absolute path",
    tarfile.OutsideDestinationError: "points outside the destination ('..')",
    tarfile.AbsoluteLinkError: "is a link to an absolute path",
    tarfile.LinkOutsideDestinationError: "is a link pointing outside the destination",
    tarfile.SpecialFileError: "is a device, fifo or other special file",
}


def _member_path(name: str, archive: Path) -> PurePosixPath:
    """The relative path of an entry, refusing absolute paths and ``..`` (tarfile's filter
    would strip a leading ``/`` silently; a zip is not filtered at all)."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or re.match(r"^[A-Za-z]:", cleaned):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} points outside the destination ('..')")
    if not parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an empty path")
    return PurePosixPath(*parts)


def _checked_tar_member(member: tarfile.TarInfo, archive: Path, dest: Path) -> tarfile.TarInfo:
    """``tarfile.data_filter``'s verdict on one entry, as an UnsafeArchiveError naming it."""
    _member_path(member.name, archive)
    try:
        return tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as error:
        reason = next((text for kind, text in _TAR_REFUSALS.items() if isinstance(error, kind)), str(error))
        raise UnsafeArchiveError(f"{archive}: entry {member.name!r} {reason}") from None


def _normalised(members: Collection[str] | None) -> set[str] | None:
    return None if members is None else {posixpath.normpath(m.replace("\\", "/")).lstrip("/") for m in members}


def safe_extract(archive: str | Path, dest: str | Path, *, members: Collection[str] | None = None) -> list[Path]:
    """Extract a zip or tar archive (any compression tarfile reads) into ``dest``.

    Every entry is checked before anything is written (see the module doc); an unsafe one
    raises UnsafeArchiveError naming it. ``members`` limits extraction to those entry names
    (e.g. the images a small run needs from a 13 GB zip). Files already present with the right
    size are not rewritten, so an interrupted extraction resumes; files are written
    atomically. Returns the paths of the wanted files.
    """
    archive, dest = Path(archive), Path(dest)
    wanted = _normalised(members)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest, wanted)
    if not tarfile.is_tarfile(archive):
        raise UnsafeArchiveError(f"{archive}: neither a zip nor a tar archive")
    return _extract_tar(archive, dest, wanted)


def _extract_zip(archive: Path, dest: Path, wanted: set[str] | None) -> list[Path]:
    written: list[Path] = []
    with zipfile.ZipFile(archive) as zf:
        plan = [(info, _member_path(info.filename, archive)) for info in zf.infolist()]
        for info, relative in plan:
            if wanted is not None and str(relative) not in wanted:
                continue
            target = dest / relative
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if not (target.is_file() and target.stat().st_size == info.file_size):
                with zf.open(info) as source:
                    atomic_write_stream(source, target)
            written.append(target)
    return written


def _extract_tar(archive: Path, dest: Path, wanted: set[str] | None) -> list[Path]:
    written: list[Path] = []
    with tarfile.open(archive) as tf:
        plan = [(member, _checked_tar_member(member, archive, dest)) for member in tf.getmembers()]
        for member, checked in plan:
            relative = posixpath.normpath(checked.name)
            if wanted is not None and relative not in wanted:
                continue
            target = dest / relative
            if checked.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if checked.issym():
                if not target.is_symlink():
                    os.symlink(checked.linkname, target)
            elif not (target.is_file() and not checked.islnk() and target.stat().st_size == checked.size):
                source = tf.extractfile(member)  # for a hard link: the linked file's data
                if source is None:
                    raise UnsafeArchiveError(f"{archive}: entry {member.name!r} has no data")
                with source:
                    atomic_write_stream(source, target)
            written.append(target)
    return written
