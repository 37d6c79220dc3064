"""What every word-vector source shares: the protocol ``embed_tags`` needs, the source name's
file fingerprint, the vector check, and the word-list reader (see ``sdl.text.sources``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_FINGERPRINT_CHUNK = 1 << 20


@runtime_checkable
class WordVectorSource(Protocol):
    """What :func:`embed_tags` needs from a source of word vectors.

    ``lookup`` returns float32 vectors only for the words the source has. A source whose
    ``lookup`` synthesises vectors for unknown words (fastText subwords) should also offer
    ``lookup_exact(words)`` returning in-vocabulary words only: :func:`embed_tags` uses it to
    test whole multi-word tags, which must not get a subword guess in place of the mean of
    their words.
    """

    name: str
    dim: int

    def lookup(self, words: Sequence[str]) -> dict[str, np.ndarray]: ...


def _fingerprint(path: Path) -> str:
    """``<file name>:<size>:<sha1 of first and last MiB, 16 hex>`` (see the module doc)."""
    size = path.stat().st_size
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        digest.update(handle.read(_FINGERPRINT_CHUNK))
        if size > _FINGERPRINT_CHUNK:
            handle.seek(max(_FINGERPRINT_CHUNK, size - _FINGERPRINT_CHUNK))
            digest.update(handle.read())
    return f"{path.name}:{size}:{digest.hexdigest()[:16]}"


def _usable(vector: np.ndarray, dim: int) -> bool:
    """A vector of the right shape, finite and not all zeros."""
    return vector.shape == (dim,) and bool(np.isfinite(vector).all()) and bool(vector.any())


def _unique(words: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(words))


def _progress_bar(total: int | None, desc: str, enabled: bool, unit: str = "it") -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # only when asked for: keeps the import cheap

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", leave=False)


class _BuiltinSource:
    """Shared parts of the sources in this module; their ``lookup`` can show progress."""

    name: str
    dim: int

    def lookup(self, words: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim})"


def _read_word_list(path: Path) -> list[str]:
    """A vocabulary: a Parquet file with one string column, or one word per text line."""
    with open(path, "rb") as handle:
        is_parquet = handle.read(4) == b"PAR1"
    if is_parquet:
        table = pq.read_table(path)
        columns = [
            name
            for name, type_ in zip(table.column_names, table.schema.types, strict=True)
            if pa.types.is_string(type_) or pa.types.is_large_string(type_)
        ]
        if len(columns) != 1:
            raise ValueError(f"{path}: expected one string column, found {columns or 'none'}")
        return [str(w) for w in table.column(columns[0]).to_pylist()]
    lines = path.read_bytes().decode("utf-8-sig").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    # Words keep their spaces (row i is line i): only line endings are removed.
    return [line.removesuffix("\r") for line in lines]
