"""The words of the small fastText model the word-vector tests train (tests/text/conftest.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdl.text.sources import TextVectorsSource

ANIMALS = ["cat", "dog", "horse", "zebra", "giraffe", "sheep", "cow", "bear", "bird", "elephant", "teddy", "teddy_bear"]
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "brown", "grey", "pink", "orange"]
VERBS = ["runs", "sleeps", "eats", "jumps", "sits", "walks"]
VOCAB = ANIMALS + COLOURS + VERBS


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


class CountingSource:
    """Wraps a source and records every word it is asked for."""

    def __init__(self, inner: TextVectorsSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.requests: list[list[str]] = []

    def lookup(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        self.requests.append(list(words))
        return self.inner.lookup(words)

    @property
    def words_asked(self) -> set[str]:
        return {w for request in self.requests for w in request}


class StubSource:
    """A source with fixed vectors (for zero/NaN/inf cases a real file cannot easily hold)."""

    def __init__(self, vectors: dict[str, np.ndarray], dim: int = 3, fail: bool = False) -> None:
        self.vectors, self.dim, self.fail, self.name = vectors, dim, fail, "stub"

    def lookup(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        if self.fail:
            raise RuntimeError("lookup failed mid-embedding")
        return {w: self.vectors[w] for w in words if w in self.vectors}


def train_fasttext_bin(folder: Path, words: Sequence[str], dim: int = 16, seed: int = 0) -> Path:
    """A tiny real fastText ``.bin`` (skipgram with subwords) trained on sentences of ``words``.
    ``thread=12``: fewer threads can leave part of the matrix uninitialised (NaN), see
    shared/ENVIRONMENT.md; a small ``bucket`` keeps the file a few MB."""
    import random

    import fasttext

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocabulary = sorted(set(words))
    corpus = folder / "corpus.txt"
    with open(corpus, "w", encoding="utf-8") as handle:
        for _ in range(max(2000, 20 * len(vocabulary) // 8)):
            handle.write(" ".join(rng.choice(vocabulary) for _ in range(8)) + "\n")
    model = fasttext.train_unsupervised(str(corpus), model="skipgram", dim=dim, epoch=2, minCount=1, minn=2, maxn=4,
                                        thread=12, bucket=20000, verbose=0)
    path = folder / "vectors.bin"
    model.save_model(str(path))
    return path
