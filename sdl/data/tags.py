"""The tag table: every tag of a dataset and its zero-shot role where the dataset fixes one
(``seen`` / ``unseen``; empty when the split stage decides)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sdl.safety.atomic import atomic_write_text
from sdl.safety.errors import InputError

TAG_ROLES = ("seen", "unseen", "")


def write_tags(path: str | Path, tags: pd.DataFrame) -> None:
    """Write the tag table (tag, role) as CSV, atomically."""
    bad = sorted(set(tags["role"]) - set(TAG_ROLES))
    if bad:
        raise InputError(f"unknown tag roles {bad}")
    atomic_write_text(path, tags[["tag", "role"]].to_csv(index=False))


def read_tags(path: str | Path) -> pd.DataFrame:
    """Read the tag table written by :func:`write_tags`."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if list(frame.columns) != ["tag", "role"]:
        raise InputError(f"{path}: expected columns tag,role; got {list(frame.columns)}")
    return frame
