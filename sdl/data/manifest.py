"""The manifest: one row per image (id, path, tags), the contract between the stages.

Parquet columns: ``image_id`` (string, unique), ``path`` (string; relative paths are relative
to the manifest's folder), ``tags`` (list<string>, the positive tags) and ``official_split``
(string or null: "train"/"test" where the dataset defines one). Two optional columns, written
only by the kinds that have them (a manifest without them reads as before):

* ``negatives`` (list<string>): tags verified *absent* from the image (Open Images'
  Confidence-0 labels). Where a manifest has it, a tag in neither list is unverified, and
  :func:`signed_targets` gives 1 / -1 / 0 (the labels LESA and BiAM evaluate Open Images on).
* ``test_settings`` (list<string> or null): for a test image, the evaluation settings
  ("zsl", "gzsl") whose test set holds it; null: every setting. The released COCO code
  scores GZSL on ``val_17_48`` and ZSL on ``val_unseen``, two image sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sdl.config.metric_names import SETTINGS
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
OPTIONAL_COLUMNS = {"negatives": pa.list_(pa.string()), "test_settings": pa.list_(pa.string())}
TEST_SETTINGS = SETTINGS  # a test set per evaluation setting


def write_manifest(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a manifest frame (columns of MANIFEST_SCHEMA; ``official_split`` optional, and the
    OPTIONAL_COLUMNS written when the frame has them)."""
    frame = frame.copy()
    if "official_split" not in frame:
        frame["official_split"] = None
    missing = {"image_id", "path", "tags"} - set(frame.columns)
    if missing:
        raise InputError(f"manifest lacks columns {sorted(missing)}")
    # column by column: pandas gives an empty object column a float dtype arrow cannot convert
    columns = {
        "image_id": pa.array(frame["image_id"].astype(str).tolist(), pa.string()),
        "path": pa.array(frame["path"].astype(str).tolist(), pa.string()),
        "tags": pa.array([list(t) for t in frame["tags"]], pa.list_(pa.string())),
        "official_split": pa.array([None if pd.isna(s) else str(s) for s in frame["official_split"]], pa.string()),
    }
    schema = MANIFEST_SCHEMA
    for name, kind in OPTIONAL_COLUMNS.items():
        if name in frame:
            if name == "negatives":
                values = [list(t) if t is not None else [] for t in frame[name]]
            else:
                values = [_settings(s, i) for s, i in zip(frame[name], frame["image_id"], strict=True)]
            columns[name] = pa.array(values, kind)
            schema = schema.append(pa.field(name, kind))
    table = pa.table(columns, schema=schema)
    write_parquet(path, table)


def _settings(value: object, image_id: object) -> list[str] | None:
    if value is None or (not isinstance(value, list | tuple | np.ndarray) and pd.isna(value)):
        return None
    settings = sorted({str(s) for s in value})  # type: ignore[union-attr]
    unknown = set(settings) - set(TEST_SETTINGS)
    if unknown or not settings:
        raise ValueError(f"manifest row {image_id}: test_settings must name some of {TEST_SETTINGS}, got {value!r}")
    return settings


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest; ``tags`` (and ``negatives``) come back as Python lists of str,
    ``test_settings`` as lists or None."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"cannot read manifest {path}: {error}") from error
    missing = set(MANIFEST_SCHEMA.names) - set(table.column_names)
    if missing:
        raise InputError(f"manifest {path} lacks columns {sorted(missing)}")
    frame = table.to_pandas()
    frame["tags"] = [list(t) if t is not None else [] for t in frame["tags"]]
    if "negatives" in frame:
        frame["negatives"] = [list(t) if t is not None else [] for t in frame["negatives"]]
    if "test_settings" in frame:
        frame["test_settings"] = [list(t) if t is not None else None for t in frame["test_settings"]]
    return frame


def has_negatives(manifest: pd.DataFrame) -> bool:
    """Whether the manifest records verified negatives (then a label is 1, -1 or 0)."""
    return "negatives" in manifest.columns


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


def signed_targets(
    tag_lists: Sequence[Sequence[str]], negative_lists: Sequence[Sequence[str]], vocabulary: Sequence[str]
) -> np.ndarray:
    """Targets (N, C) int8: 1 a positive tag, -1 a verified negative, 0 unverified (LESA's
    ``2 * Confidence - 1`` on the verified labels, BiAM's input). A tag listed both ways counts
    as positive (the validate stage reports such rows). Tags outside ``vocabulary`` are ignored."""
    if len(negative_lists) != len(tag_lists):
        raise ValueError(f"{len(tag_lists)} tag lists but {len(negative_lists)} negative lists")
    index = {tag: i for i, tag in enumerate(vocabulary)}
    targets = np.zeros((len(tag_lists), len(vocabulary)), dtype=np.int8)
    for row, (tags, negatives) in enumerate(zip(tag_lists, negative_lists, strict=True)):
        targets[row, [index[t] for t in negatives if t in index]] = -1
        targets[row, [index[t] for t in tags if t in index]] = 1
    return targets


def targets_of(rows: pd.DataFrame, vocabulary: Sequence[str]) -> np.ndarray:
    """The targets of manifest ``rows`` over ``vocabulary``: :func:`signed_targets` where the
    manifest has verified negatives, else :func:`multi_hot`."""
    tag_lists = [list(t) for t in rows["tags"]]
    if has_negatives(rows):
        return signed_targets(tag_lists, [list(t) for t in rows["negatives"]], vocabulary)
    return multi_hot(tag_lists, vocabulary)


def subset_frame(manifest: pd.DataFrame, image_split: pd.DataFrame, subset: str) -> pd.DataFrame:
    """The manifest rows of one subset (train/val/test), in split order, with the split's own
    columns beside them (e.g. the test settings of each test image)."""
    chosen = image_split.loc[image_split["subset"] == subset].reset_index(drop=True)
    rows = manifest.set_index("image_id").loc[chosen["image_id"].to_numpy()].reset_index()
    extra = [c for c in chosen.columns if c not in ("image_id", "subset") and c not in rows.columns]
    return pd.concat([rows, chosen[extra]], axis=1) if extra else rows


def subset_rows(manifest_path: str | Path, manifest: pd.DataFrame, image_split: pd.DataFrame, subset: str) -> tuple[list[Path], list[list[str]]]:
    """Absolute paths and tag lists of the images of one subset (train/val/test), in split order."""
    rows = subset_frame(manifest, image_split, subset)
    return resolve_paths(manifest_path, rows["path"]), [list(t) for t in rows["tags"]]
