"""The tag vocabulary a dataset's model serves, and how it grows.

A dataset's tags come from its data (the ``download`` stage's tag table; split into seen and
unseen by the ``split`` stage). The vocabulary file, ``vocabularies/<dataset>.txt`` (tracked
in git and a dependency of the ``embed`` stage), adds tags and word forms, one tag per line::

    # comments and blank lines are ignored
    zebra                          # a tag; its word vector is the vector of "zebra"
    polar bear                     # a multi-word tag: the mean of its words' vectors
    aeroplane = airplane | plane   # a tag with forms: the mean of its forms' vectors

A tag that is not one of the dataset's is an *extra* tag: it has no labelled image yet, the
model never trains on it, and it is ranked zero-shot through its word vector as soon as it
is embedded. The serving vocabulary (``vocabulary.parquet``) holds every tag with its vector
and role (``seen`` / ``unseen`` / ``extra``); evaluation keeps the dataset's tags for its
metrics and adds the extra tags as distractors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sdl.safety.atomic import write_parquet
from sdl.safety.errors import InputError

ROLES = ("seen", "unseen", "extra")
_FORM_SEPARATOR = re.compile(r"\s*\|\s*")


@dataclass(frozen=True)
class VocabularyEntry:
    """One tag and the word forms its vector is the mean of (the tag itself by default)."""

    tag: str
    forms: tuple[str, ...] = field(default=())

    @property
    def texts(self) -> tuple[str, ...]:
        """What gets embedded for this tag."""
        return self.forms or (self.tag,)


def parse_vocabulary(text: str, source: str = "<vocabulary>") -> list[VocabularyEntry]:
    """Parse a vocabulary file's text; errors name the line. Tags are unique ignoring case."""
    entries: list[VocabularyEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tag, has_forms, rest = (part.strip() for part in line.partition("="))
        forms = tuple(f for f in _FORM_SEPARATOR.split(rest) if f) if has_forms else ()
        if not tag:
            raise InputError(f"{source}:{number}: a line must start with a tag: {raw!r}")
        if has_forms and not forms:
            raise InputError(f"{source}:{number}: '=' must be followed by at least one form: {raw!r}")
        key = " ".join(tag.lower().split())
        if key in seen:
            raise InputError(f"{source}:{number}: tag {tag!r} repeats line {seen[key]} (tags are unique, ignoring case)")
        seen[key] = number
        entries.append(VocabularyEntry(tag=tag, forms=forms))
    return entries


def read_vocabulary_file(path: str | Path) -> list[VocabularyEntry]:
    """Read ``vocabularies/<dataset>.txt``; a missing file is an empty vocabulary."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error})") from None
    return parse_vocabulary(text, str(path))


@dataclass(frozen=True)
class Vocabulary:
    """Every tag served, in order (seen, unseen, then extra), with the forms to embed."""

    entries: list[VocabularyEntry]
    roles: list[str]

    @property
    def tags(self) -> list[str]:
        return [e.tag for e in self.entries]

    @property
    def extra(self) -> list[str]:
        return [e.tag for e, r in zip(self.entries, self.roles, strict=True) if r == "extra"]

    def texts(self) -> list[str]:
        """Every distinct text to embed (tags and forms), in first-use order."""
        return list(dict.fromkeys(t for e in self.entries for t in e.texts))


def build_vocabulary(seen: Sequence[str], unseen: Sequence[str], listed: Sequence[VocabularyEntry]) -> Vocabulary:
    """The dataset's tags (with forms where the file gives them) followed by the file's extra tags."""
    by_key = {" ".join(e.tag.lower().split()): e for e in listed}
    entries, roles = [], []
    dataset_keys = set()
    for role, tags in (("seen", seen), ("unseen", unseen)):
        for tag in tags:
            key = " ".join(tag.lower().split())
            dataset_keys.add(key)
            given = by_key.get(key)
            entries.append(VocabularyEntry(tag=tag, forms=given.forms if given else ()))
            roles.append(role)
    for key, entry in by_key.items():
        if key not in dataset_keys:
            entries.append(entry)
            roles.append("extra")
    return Vocabulary(entries=entries, roles=roles)


def tag_vectors(vocabulary: Vocabulary, text_vectors: dict[str, np.ndarray]) -> np.ndarray:
    """(C, d) unit vectors: each tag's is the l2-normalised mean of its forms' (unit) vectors."""
    rows = []
    for entry in vocabulary.entries:
        mean = np.mean([np.asarray(text_vectors[t], np.float64) for t in entry.texts], axis=0)
        norm = np.linalg.norm(mean)
        if not np.isfinite(norm) or norm == 0:
            raise InputError(f"tag {entry.tag!r}: the mean of its forms' vectors is zero or not finite")
        rows.append(mean / norm)
    return np.asarray(rows, dtype=np.float32)


def vocabulary_hash(tags: Sequence[str]) -> str:
    """A short hash of an ordered tag list (recorded with every trained and registered model)."""
    return hashlib.sha256("\n".join(tags).encode()).hexdigest()[:16]


def write_serving_vocabulary(path: str | Path, vocabulary: Vocabulary, vectors: np.ndarray, source: str) -> None:
    """Save the serving vocabulary: tag, vector, role, unseen (not trained on), forms, source."""
    table = pa.table({
        "tag": pa.array(vocabulary.tags, pa.string()),
        "vector": pa.array([list(map(float, v)) for v in vectors], pa.list_(pa.float32())),
        "role": pa.array(vocabulary.roles, pa.string()),
        "unseen": pa.array([r != "seen" for r in vocabulary.roles], pa.bool_()),
        "forms": pa.array([list(e.forms) for e in vocabulary.entries], pa.list_(pa.string())),
        "source": pa.array([source] * len(vocabulary.tags), pa.string()),
    })
    write_parquet(path, table)


def read_serving_vocabulary(path: str | Path) -> pd.DataFrame:
    """Read a serving vocabulary (columns tag, vector, role, unseen, forms, source)."""
    frame = pd.read_parquet(path)
    missing = {"tag", "vector", "role", "unseen"} - set(frame.columns)
    if missing:
        raise InputError(f"{path}: not a serving vocabulary (lacks {sorted(missing)})")
    return frame
