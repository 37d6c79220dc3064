"""The manifest: one row per image (id, path, tags), the contract between the stages.

Parquet columns: ``image_id`` (string, unique), ``path`` (string; relative paths are relative
to the manifest's folder), ``tags`` (list<string>, the positive tags) and ``official_split``
(string or null: "train"/"test" where the dataset defines one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sdl.safety.atomic import write_parquet
from sdl.safety.errors import InputError

MANIFEST_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("path", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("official_split", pa.string()),
    ]
)


def write_manifest(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a manifest frame (columns of MANIFEST_SCHEMA; ``official_split`` optional)."""
    frame = frame.copy()
    if "official_split" not in frame:
        frame["official_split"] = None
    missing = {"image_id", "path", "tags"} - set(frame.columns)
    if missing:
        raise InputError(f"manifest lacks columns {sorted(missing)}")
    # column by column: pandas gives an empty object column a float dtype arrow cannot convert
    table = pa.table({
        "image_id": pa.array(frame["image_id"].astype(str).tolist(), pa.string()),
        "path": pa.array(frame["path"].astype(str).tolist(), pa.string()),
        "tags": pa.array([list(t) for t in frame["tags"]], pa.list_(pa.string())),
        "official_split": pa.array([None if pd.isna(s) else str(s) for s in frame["official_split"]], pa.string()),
    }, schema=MANIFEST_SCHEMA)
    write_parquet(path, table)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest; ``tags`` come back as Python lists of str."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"cannot read manifest {path}: {error}") from error
    missing = set(MANIFEST_SCHEMA.names) - set(table.column_names)
    if missing:
        raise InputError(f"manifest {path} lacks columns {sorted(missing)}")
    frame = table.to_pandas()
    frame["tags"] = [list(t) if t is not None else [] for t in frame["tags"]]
    return frame


def resolve_paths(manifest_path: str | Path, paths: Iterable[str]) -> list[Path]:
    """Absolute image paths: relative entries are relative to the manifest's folder."""
    base = Path(manifest_path).resolve().parent
    return [p if p.is_absolute() else base / p for p in map(Path, paths)]


def multi_hot(tag_lists: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> np.ndarray:
    """Targets (N, C) float32 in {0, 1}; tags outside ``vocabulary`` are ignored."""
    index = {tag: i for i, tag in enumerate(vocabulary)}
    targets = np.zeros((len(tag_lists), len(vocabulary)), dtype=np.float32)
    for row, tags in enumerate(tag_lists):
        columns = [index[t] for t in tags if t in index]
        targets[row, columns] = 1.0
    return targets


def subset_rows(manifest_path: str | Path, manifest: pd.DataFrame, image_split: pd.DataFrame, subset: str) -> tuple[list[Path], list[list[str]]]:
    """Absolute paths and tag lists of the images of one subset (train/val/test), in split order."""
    chosen = image_split.loc[image_split["subset"] == subset, "image_id"]
    rows = manifest.set_index("image_id").loc[chosen.to_numpy()]
    return resolve_paths(manifest_path, rows["path"]), [list(t) for t in rows["tags"]]
