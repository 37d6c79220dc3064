"""Embedding tags (sdl.text.embedding): whole tags, means of words, every failure named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdl.text.embedding import MissingWordVectorError, embed_tags, split_tag
from sdl.text.sources import FastTextBinSource, TextVectorsSource
from tests.helpers.wordvecs import StubSource, unit


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
            unit(vec("cat")),
            unit((vec("red") + vec("cat")) / 2),
            unit((vec("brown") + vec("bear")) / 2),
            unit((vec("grey") + vec("horse")) / 2),
            unit((vec("white") + vec("dog")) / 2),
        ]
    )
    for src in (FastTextBinSource(ft["bin"]), TextVectorsSource(ft["vec"])):
        got = embed_tags(tags, src)
        assert got.shape == (5, 16) and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert embed_tags([], TextVectorsSource(ft["vec"])).shape == (0, 16)


def test_whole_tag_found_verbatim_wins(ft: dict[str, Path], ft_model: Any) -> None:
    whole = unit(ft_model.get_word_vector("teddy_bear"))
    mean = unit(ft_model.get_word_vector("teddy") + ft_model.get_word_vector("bear"))
    for src in (FastTextBinSource(ft["bin"]), TextVectorsSource(ft["txt"])):
        got = embed_tags(["teddy_bear", "teddy bear", "teddy-bear"], src)
        np.testing.assert_allclose(got[0], whole, atol=1e-6)
        np.testing.assert_allclose(got[1], mean, atol=1e-6)
        np.testing.assert_allclose(got[2], mean, atol=1e-6)
    # A phrase the .bin lacks must be the mean of its words, not a subword guess for the phrase.
    got = embed_tags(["red_cat"], FastTextBinSource(ft["bin"]))[0]
    np.testing.assert_allclose(
        got, unit(ft_model.get_word_vector("red") + ft_model.get_word_vector("cat")), atol=1e-6
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
