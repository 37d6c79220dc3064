"""The Parquet tag-vector file: one row per tag (tag, vector, source, dim), one source per
file, rows sorted by tag, written atomically; read back in any tag order with every row
checked (``sdl.text.embedding.update_cache`` keeps it up to date for a growing tag list)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sdl.safety.atomic import write_parquet
from sdl.text.errors import MissingWordVectorError, WordVectorCacheError, check_tag_list

CACHE_SCHEMA = pa.schema(
    [
        ("tag", pa.string()),
        ("vector", pa.list_(pa.float32())),
        ("source", pa.string()),
        ("dim", pa.int32()),
    ]
)


# read_cache re-checks the unit norm with a tolerance that float32 rounding stays far inside.
_NORM_TOLERANCE = 1e-3


def read_cache_table(path: Path) -> tuple[list[str], list[str], list[np.ndarray], list[int]]:
    """(tags, sources, vectors, dims) of a cache file, with a clear error naming it."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise WordVectorCacheError(
            f"cannot read word-vector cache {path}: {exc} (delete the file to rebuild it)"
        ) from exc
    missing = [c for c in CACHE_SCHEMA.names if c not in table.column_names]
    if missing:
        raise WordVectorCacheError(f"word-vector cache {path} lacks columns {missing}")
    nulls = [c for c in CACHE_SCHEMA.names if table.column(c).null_count]
    if nulls:
        raise WordVectorCacheError(f"word-vector cache {path} has nulls in columns {nulls}")
    tags = [str(t) for t in table.column("tag").to_pylist()]
    sources = [str(s) for s in table.column("source").to_pylist()]
    dims = [int(d) for d in table.column("dim").to_pylist()]
    column = table.column("vector").combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    vectors = [values[offsets[i] : offsets[i + 1]] for i in range(len(tags))]
    duplicates = sorted(t for t, n in Counter(tags).items() if n > 1)
    if duplicates:
        raise WordVectorCacheError(f"word-vector cache {path} repeats tags {duplicates}")
    for tag, vector, dim in zip(tags, vectors, dims, strict=True):
        if vector.shape != (dim,) or not np.isfinite(vector).all():
            raise WordVectorCacheError(
                f"word-vector cache {path}: the vector of {tag!r} is not {dim} finite numbers"
            )
    return tags, sources, vectors, dims


def cache_table(rows: dict[str, tuple[np.ndarray, str]]) -> pa.Table:
    tags = sorted(rows)  # sorted: the same tags give the same file, however they were added
    vectors = [rows[t][0].astype(np.float32) for t in tags]
    lengths = np.array([len(v) for v in vectors], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    values = pa.array(np.concatenate(vectors) if vectors else np.zeros(0, np.float32), pa.float32())
    return pa.Table.from_arrays(
        [
            pa.array(tags, pa.string()),
            pa.ListArray.from_arrays(offsets, values, type=pa.list_(pa.float32())),
            pa.array([rows[t][1] for t in tags], pa.string()),
            pa.array(lengths, pa.int32()),
        ],
        schema=CACHE_SCHEMA,
    )


def write_vectors(path: str | os.PathLike[str], tags: Sequence[str], vectors: np.ndarray, source_name: str) -> None:
    """Write tag vectors in the cache's format (readable by :func:`read_cache`), atomically.
    Rows are sorted by tag, so the same vectors always give the same bytes."""
    check_tag_list(tags)
    if len(tags) != len(vectors):
        raise ValueError(f"{len(tags)} tags but {len(vectors)} vectors")
    write_parquet(path, cache_table({t: (np.asarray(v), source_name) for t, v in zip(tags, vectors, strict=True)}))


def read_cache(
    cache_path: str | os.PathLike[str], tags: Sequence[str], source_name: str | None = None
) -> np.ndarray:
    """The cached vectors of ``tags``, shape ``(len(tags), dim)`` in the order of ``tags``.

    Raises:
        MissingWordVectorError: naming every tag without a row (of ``source_name``, if given).
        WordVectorCacheError: an unreadable file, mixed dims or sources among the rows asked
            for, or rows that are not finite unit vectors.
    """
    check_tag_list(tags)
    path = Path(cache_path)
    if not path.exists():
        raise WordVectorCacheError(f"word-vector cache {path} does not exist")
    cached_tags, sources, vectors, dims = read_cache_table(path)
    index = {t: i for i, t in enumerate(cached_tags)}
    rows = [index.get(t) for t in tags]
    missing = [
        t for t, r in zip(tags, rows, strict=True)
        if r is None or (source_name is not None and sources[r] != source_name)
    ]
    if missing:
        where = f" for source {source_name!r}" if source_name is not None else ""
        raise MissingWordVectorError(
            f"word-vector cache {path} has no vector{where} for {len(missing)} tag(s): "
            + ", ".join(map(repr, missing)),
            missing,
        )
    picked = [r for r in rows if r is not None]
    if len({dims[r] for r in picked}) > 1 or len({sources[r] for r in picked}) > 1:
        raise WordVectorCacheError(
            f"word-vector cache {path} mixes dims {sorted({dims[r] for r in picked})} / sources "
            f"{sorted({sources[r] for r in picked})} among the requested tags"
        )
    dim = dims[picked[0]] if picked else (dims[0] if dims else 0)
    out = np.zeros((0, dim), np.float32)
    if picked:
        out = np.stack([vectors[r] for r in picked]).astype(np.float32)
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    bad = [t for t, n in zip(tags, norms, strict=True) if abs(n - 1.0) > _NORM_TOLERANCE]
    if bad:
        raise WordVectorCacheError(
            f"word-vector cache {path}: vectors of {bad} are not l2-normalised"
        )
    return out
