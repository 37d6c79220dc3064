"""The vocabulary file, the serving vocabulary and the retraining thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdl.text.vocabulary import (
    VocabularyEntry,
    build_vocabulary,
    parse_vocabulary,
    read_serving_vocabulary,
    read_vocabulary_file,
    tag_vectors,
    vocabulary_hash,
    write_serving_vocabulary,
)


def test_parse_tags_forms_comments_bom_and_crlf() -> None:
    text = "\ufeff# header\r\nzebra\r\n\r\npolar bear   # a comment\r\naeroplane = airplane | plane\r\n"
    entries = parse_vocabulary(text)
    assert entries == [
        VocabularyEntry("zebra"), VocabularyEntry("polar bear"), VocabularyEntry("aeroplane", ("airplane", "plane")),
    ]
    assert entries[2].texts == ("airplane", "plane") and entries[0].texts == ("zebra",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cat\nCat\n", "vocab.txt:2: tag 'Cat' repeats line 1"),
        ("hot  air\nhot air\n", "vocab.txt:2: .* repeats line 1"),
        ("= plane\n", "vocab.txt:1: a line must start with a tag"),
        ("cat =\n", "vocab.txt:1: '=' must be followed by at least one form"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_vocabulary(text, "vocab.txt")


def test_missing_file_is_an_empty_vocabulary(tmp_path: Path) -> None:
    assert read_vocabulary_file(tmp_path / "none.txt") == []
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_vocabulary_file(tmp_path / "bad.txt")


def test_build_keeps_dataset_order_then_extra_tags_and_applies_forms() -> None:
    listed = parse_vocabulary("Dog = hound | dog\nlion\ntiger\ncat\n")
    vocabulary = build_vocabulary(["dog", "cow"], ["cat"], listed)
    assert vocabulary.tags == ["dog", "cow", "cat", "lion", "tiger"]
    assert vocabulary.roles == ["seen", "seen", "unseen", "extra", "extra"]
    assert vocabulary.entries[0].forms == ("hound", "dog")  # matched ignoring case
    assert vocabulary.extra == ["lion", "tiger"]
    assert vocabulary.texts() == ["hound", "dog", "cow", "cat", "lion", "tiger"]


def test_tag_vector_is_the_normalised_mean_of_its_forms() -> None:
    vocabulary = build_vocabulary(["a"], ["b"], parse_vocabulary("a = x | y\n"))
    text_vectors = {"x": np.array([1.0, 0.0]), "y": np.array([0.0, 1.0]), "b": np.array([0.6, 0.8])}
    vectors = tag_vectors(vocabulary, text_vectors)
    np.testing.assert_allclose(vectors, [[2**-0.5, 2**-0.5], [0.6, 0.8]], atol=1e-7)
    with pytest.raises(ValueError, match="'a'"):
        tag_vectors(vocabulary, {**text_vectors, "y": np.array([-1.0, 0.0])})


def test_serving_vocabulary_round_trip(tmp_path: Path) -> None:
    vocabulary = build_vocabulary(["a"], ["b"], parse_vocabulary("c = x y\n"))
    vectors = np.eye(3, dtype=np.float32)
    write_serving_vocabulary(tmp_path / "v.parquet", vocabulary, vectors, "src")
    frame = read_serving_vocabulary(tmp_path / "v.parquet")
    assert frame["tag"].tolist() == ["a", "b", "c"] and frame["role"].tolist() == ["seen", "unseen", "extra"]
    assert frame["unseen"].tolist() == [False, True, True] and list(frame["forms"][2]) == ["x y"]
    np.testing.assert_array_equal(np.stack(frame["vector"].to_numpy()), vectors)
    assert vocabulary_hash(["a", "b"]) != vocabulary_hash(["b", "a"])
