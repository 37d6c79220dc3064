"""The safe archive extractor (sdl.data.fetch.archives): checked before anything is written."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from sdl.data.fetch.archives import safe_extract
from sdl.data.fetch.errors import UnsafeArchiveError


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in entries:
            payload = (data or {}).get(info.name)
            if payload is not None:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    return path


def test_safe_extract_zip_and_members(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"annotations/a.json": b"{}", "annotations/b.json": b"[]", "x/y.txt": b"y"})
    written = safe_extract(archive, tmp_path / "out", members=["annotations/a.json"])
    assert written == [tmp_path / "out" / "annotations" / "a.json"]
    assert not (tmp_path / "out" / "x").exists()
    assert len(safe_extract(archive, tmp_path / "out")) == 3


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "..\\evil.txt", "/abs/evil.txt", "C:/evil.txt"])
def test_safe_extract_refuses_escaping_zip_entries(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_refuses_links_outside(tmp_path: Path) -> None:
    link = tarfile.TarInfo("data/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    with pytest.raises(UnsafeArchiveError, match="data/passwd"):
        safe_extract(_tar(tmp_path / "sym.tgz", [link]), tmp_path / "out")
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/shadow"
    with pytest.raises(UnsafeArchiveError, match="hard"):
        safe_extract(_tar(tmp_path / "hard.tgz", [hard]), tmp_path / "out")
    absolute = tarfile.TarInfo("/tmp/evil")
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        safe_extract(_tar(tmp_path / "abs.tgz", [absolute], {"/tmp/evil": b"x"}), tmp_path / "out")


def test_safe_extract_tar_with_inside_link(tmp_path: Path) -> None:
    file = tarfile.TarInfo("pkg/data.txt")
    link = tarfile.TarInfo("pkg/alias.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "data.txt"
    safe_extract(_tar(tmp_path / "ok.tgz", [file, link], {"pkg/data.txt": b"hello"}), tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "alias.txt").read_bytes() == b"hello"
    assert os.path.islink(tmp_path / "out" / "pkg" / "alias.txt")
