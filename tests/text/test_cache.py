"""The Parquet tag-vector cache (sdl.text.cache, sdl.text.embedding.update_cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sdl.text.cache import CACHE_SCHEMA, WordVectorCacheError, read_cache
from sdl.text.embedding import MissingWordVectorError, embed_tags, update_cache
from sdl.text.sources import TextVectorsSource
from tests.helpers.wordvecs import CountingSource, StubSource


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
