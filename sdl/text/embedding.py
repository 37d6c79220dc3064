"""Embedding tags: a tag's vector is its l2-normalised word vector, or the normalised mean of
its words' vectors for a multi-word tag (SDL paper, section 4.1: l2-normalised fastText vectors)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdl.safety.atomic import write_parquet
from sdl.text.cache import cache_table, read_cache_table
from sdl.text.errors import MissingWordVectorError, WordVectorCacheError, check_tag_list
from sdl.text.sources import WordVectorSource, _BuiltinSource, _unique, _usable

_TAG_SEPARATORS = re.compile(r"[\s_\-(),/&]+")


# Open Images names shared by several MIDs are disambiguated as "Name (/m/0abc)": the MID is
# not a word, so it is dropped before the tag is embedded.
_MID_QUALIFIER = re.compile(r"\s*\((?:/m/|/g/)[^)]*\)\s*$")


def split_tag(tag: str) -> list[str]:
    """The words of a tag: split on whitespace, underscores, hyphens, parentheses, commas,
    slashes and '&', after dropping an Open Images MID qualifier such as " (/m/0abc)"."""
    return [w for w in _TAG_SEPARATORS.split(_MID_QUALIFIER.sub("", tag)) if w]


def _lookup(
    source: WordVectorSource, words: list[str], progress: bool, exact: bool = False
) -> dict[str, np.ndarray]:
    if not words:
        return {}
    if exact:
        return dict(source.lookup_exact(words))  # type: ignore[attr-defined]
    if isinstance(source, _BuiltinSource):
        return source.lookup(words, progress=progress)
    return dict(source.lookup(words))


def embed_tags(tags: Sequence[str], source: WordVectorSource, progress: bool = False) -> np.ndarray:
    """Embed tags as l2-normalised float32 rows, shape ``(len(tags), source.dim)``.

    A multi-word tag is first looked up whole, stripped but otherwise verbatim (fastText has
    some phrases such as ``"new_york"``; for a fastText ``.bin`` only in-vocabulary entries
    count here, not subword guesses). Otherwise it is split on whitespace, underscores and
    hyphens and gets the mean of its words' vectors, then l2-normalised: the mean of word
    vectors is the usual composition for fastText/GloVe phrase vectors and what
    LESA/BiAM-style tag lists need for entries like ``"hot air balloon"``. Every word must
    have a vector. A single-word tag is looked up as is (fastText subwords included).

    Raises:
        MissingWordVectorError: naming every tag that is empty, has a word without a vector,
            or comes out zero/non-finite. No tag ever gets a zero vector silently.
    """
    check_tag_list(tags)
    dim = source.dim
    parsed = [(tag, _MID_QUALIFIER.sub("", tag).strip(), split_tag(tag)) for tag in tags]
    wholes = _unique(whole for _, whole, words in parsed if len(words) > 1)
    words = _unique(w for _, _, ws in parsed for w in ws)
    if hasattr(source, "lookup_exact"):
        found_whole = _lookup(source, wholes, progress, exact=True)
        found = _lookup(source, words, progress)
    else:
        # One call for both: a text source streams its whole file once per lookup.
        found = _lookup(source, _unique([*wholes, *words]), progress)
        found_whole = {w: found[w] for w in wholes if w in found}

    out = np.zeros((len(parsed), dim), dtype=np.float32)
    problems: list[tuple[str, str]] = []
    for row, (tag, whole, tag_words) in enumerate(parsed):
        if not tag_words:
            problems.append((tag, "empty tag"))
            continue
        vector = found_whole.get(whole) if len(tag_words) > 1 else None
        if vector is None or not _usable(np.asarray(vector, dtype=np.float32), dim):
            bad = [
                w for w in tag_words
                if w not in found or not _usable(np.asarray(found[w], dtype=np.float32), dim)
            ]
            if bad:
                problems.append((tag, "no vector for " + ", ".join(map(repr, bad))))
                continue
            vector = np.mean([np.asarray(found[w], dtype=np.float64) for w in tag_words], axis=0)
        vector = np.asarray(vector, dtype=np.float64)
        norm = float(np.linalg.norm(vector))
        if not math.isfinite(norm) or norm == 0.0:
            problems.append((tag, "the mean of its word vectors is zero or not finite"))
            continue
        out[row] = (vector / norm).astype(np.float32)
    if problems:
        details = "; ".join(f"{tag!r} ({why})" for tag, why in problems)
        raise MissingWordVectorError(
            f"cannot embed {len(problems)} tag(s) with word vectors {source.name!r}: {details}",
            [tag for tag, _ in problems],
        )
    return out


@dataclass
class CacheUpdate:
    """What :func:`update_cache` did.

    ``added``: tags embedded now; ``kept``: requested tags served from the cache;
    ``dropped``: rows of another source discarded; ``written``: whether the file was
    (re)written; ``path``: the cache file.
    """

    added: list[str]
    kept: int
    path: Path
    dropped: int = 0
    written: bool = False


def update_cache(
    cache_path: str | os.PathLike[str],
    tags: Sequence[str],
    source: WordVectorSource,
    progress: bool = False,
) -> CacheUpdate:
    """Bring the Parquet tag-vector cache up to date for ``tags`` and ``source``.

    Rows of ``source`` are kept, also for tags no longer requested (a tag list that shrinks
    and grows back re-embeds nothing); rows of any other source are dropped, so the file
    always holds one source. Only requested tags without a row are embedded; the file is
    rewritten atomically, and only when something changed.

    Raises:
        WordVectorCacheError: the existing file is unreadable or inconsistent.
        MissingWordVectorError: some new tags cannot be embedded (the cache is left as it was).
    """
    check_tag_list(tags)
    path = Path(cache_path)
    rows: dict[str, tuple[np.ndarray, str]] = {}
    dropped = 0
    if path.exists():
        cached_tags, sources, vectors, dims = read_cache_table(path)
        for tag, name, vector, dim in zip(cached_tags, sources, vectors, dims, strict=True):
            if name != source.name:
                dropped += 1
                continue
            if dim != source.dim:
                raise WordVectorCacheError(
                    f"word-vector cache {path}: {tag!r} has dim {dim} but source {source.name!r} "
                    f"has dim {source.dim}"
                )
            rows[tag] = (vector, name)
    requested = _unique(tags)
    new = [t for t in requested if t not in rows]
    if new:
        vectors = embed_tags(new, source, progress=progress)
        for tag, vector in zip(new, vectors, strict=True):
            rows[tag] = (vector, source.name)
    written = bool(new) or dropped > 0 or not path.exists()
    if written:
        write_parquet(path, cache_table(rows))
    return CacheUpdate(
        added=new, kept=len(requested) - len(new), path=path, dropped=dropped, written=written
    )
