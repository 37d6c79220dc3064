"""The seen/unseen tag split and the train/val/test image split (paper section 3.1).

Seen tags S are the only ones the loss sees in training; unseen tags U are only scored at
test time (ZSL over U, GZSL over C = S ∪ U). Both splits are computed once, by the ``split``
stage, and written to files that every later stage reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sdl.config.params import ImageSplitSpec, TagSplitSpec
from sdl.data.manifest import TEST_SETTINGS
from sdl.safety.atomic import read_json, write_json, write_parquet
from sdl.safety.errors import InputError

SUBSETS = ("train", "val", "test")


@dataclass(frozen=True)
class TagSplit:
    """Seen and unseen tags, disjoint, each in a fixed order."""

    seen: list[str]
    unseen: list[str]

    def __post_init__(self) -> None:
        overlap = sorted(set(self.seen) & set(self.unseen))
        if overlap:
            raise InputError(f"tags both seen and unseen: {overlap}")
        for name, tags in (("seen", self.seen), ("unseen", self.unseen)):
            if not tags:
                raise InputError(f"the {name} tag set is empty")
            duplicates = sorted({t for t in tags if tags.count(t) > 1})
            if duplicates:
                raise InputError(f"duplicate {name} tags: {duplicates}")

    @property
    def all_tags(self) -> list[str]:
        """GZSL vocabulary: seen tags first, then unseen."""
        return [*self.seen, *self.unseen]


def split_tags(vocabulary: Sequence[str], spec: TagSplitSpec, roles: dict[str, str] | None = None) -> TagSplit:
    """Split ``vocabulary`` into seen and unseen tags according to ``spec``."""
    vocab = list(vocabulary)
    if spec.method == "listed":
        unknown = sorted(set(spec.unseen) - set(vocab))
        if unknown:
            raise InputError(f"unseen tags not in the vocabulary: {unknown}")
        unseen = [t for t in vocab if t in set(spec.unseen)]
    elif spec.method == "predefined":
        if not roles:
            raise InputError("split method 'predefined' needs tag roles from the dataset")
        bad = sorted({r for r in roles.values()} - {"seen", "unseen"})
        if bad:
            raise InputError(f"tag roles must be 'seen' or 'unseen', got {bad}")
        seen = [t for t in vocab if roles.get(t) == "seen"]
        unseen = [t for t in vocab if roles.get(t) == "unseen"]
        return TagSplit(seen=seen, unseen=unseen)
    elif spec.method == "random":
        if not 0 < spec.num_unseen < len(vocab):
            raise InputError(f"num_unseen must be in 1..{len(vocab) - 1}, got {spec.num_unseen}")
        rng = np.random.default_rng(spec.seed)
        chosen = set(rng.choice(vocab, size=spec.num_unseen, replace=False).tolist())
        unseen = [t for t in vocab if t in chosen]
    else:
        raise InputError(f"unknown tag split method {spec.method!r}: listed, predefined or random")
    return TagSplit(seen=[t for t in vocab if t not in set(unseen)], unseen=unseen)


def split_images(manifest: pd.DataFrame, tags: TagSplit, spec: ImageSplitSpec) -> pd.DataFrame:
    """Assign each image to train/val/test; return (image_id, subset) in manifest order.

    Where the manifest has an official split, its test images form the test set and val is
    drawn from its train images; otherwise test and val are drawn at random. Train and val
    images that carry no tag of the vocabulary are left out (nothing to learn from); test
    images stay whatever their tags, since a protocol that evaluates every test image
    (``evaluate.<d>.protocol: all``, LESA and BiAM on NUS-WIDE) counts them, and the others
    drop them when they evaluate. Where the manifest names each test image's settings
    (``test_settings``), the result has boolean columns ``zsl`` and ``gzsl``: the test image
    sets of the two settings (True on the other subsets' rows).
    """
    vocab = set(tags.all_tags)
    unseen = set(tags.unseen)
    rng = np.random.default_rng(spec.seed)
    has_tag = manifest["tags"].map(lambda ts: any(t in vocab for t in ts)).to_numpy()
    subset = np.full(len(manifest), "", dtype=object)
    official = manifest.get("official_split")
    if official is not None and official.notna().any():
        is_test = (official == "test").to_numpy()
        subset[is_test] = "test"
        train_pool = np.flatnonzero((official == "train").to_numpy())
        val_count = int(round(spec.val_fraction * len(train_pool)))
        val_rows = rng.choice(train_pool, size=val_count, replace=False)
        subset[train_pool] = "train"
        subset[val_rows] = "val"
    else:
        order = rng.permutation(len(manifest))
        test_count = int(round(spec.test_fraction * len(manifest)))
        val_count = int(round(spec.val_fraction * len(manifest)))
        subset[order[:test_count]] = "test"
        subset[order[test_count : test_count + val_count]] = "val"
        subset[order[test_count + val_count :]] = "train"
    if spec.train_seen_only:
        shows_unseen = manifest["tags"].map(lambda ts: any(t in unseen for t in ts)).to_numpy()
        subset[(subset == "train") & shows_unseen] = ""
    subset[~has_tag & (subset != "test")] = ""
    result = pd.DataFrame({"image_id": manifest["image_id"].to_numpy(), "subset": subset})
    if "test_settings" in manifest.columns:
        settings = manifest["test_settings"].to_numpy()
        for setting in TEST_SETTINGS:
            result[setting] = [subset[i] != "test" or s is None or setting in s for i, s in enumerate(settings)]
    result = result[result["subset"] != ""].reset_index(drop=True)
    for name in SUBSETS:
        if not (result["subset"] == name).any() and (name != "val" or spec.val_fraction > 0):
            raise InputError(
                f"the {name} split is empty ({len(manifest)} images, val_fraction {spec.val_fraction:g}, "
                f"test_fraction {spec.test_fraction:g}): raise split.<dataset>.images fractions or add images"
            )
    for setting in TEST_SETTINGS:
        if setting in result and not result.loc[result["subset"] == "test", setting].any():
            raise InputError(f"the {setting.upper()} test set is empty: no test image lists {setting!r} in test_settings")
    return result


TAGS_FILE = "tags.json"
IMAGES_FILE = "images.parquet"


def write_split(folder: str | Path, tags: TagSplit, images: pd.DataFrame) -> None:
    """Write the tag split (JSON) and the image split (Parquet: image_id, subset, and the
    ``zsl`` / ``gzsl`` test-set columns where the split has them)."""
    folder = Path(folder)
    counts = {name: int((images["subset"] == name).sum()) for name in SUBSETS}
    columns = ["image_id", "subset", *(s for s in TEST_SETTINGS if s in images)]
    for setting in columns[2:]:  # the two settings' own test sets
        counts[f"test_{setting}"] = int((images["subset"].eq("test") & images[setting]).sum())
    write_json(folder / TAGS_FILE, {"seen": tags.seen, "unseen": tags.unseen, "images": counts})
    write_parquet(folder / IMAGES_FILE, pa.Table.from_pandas(images[columns], preserve_index=False))


def read_split(folder: str | Path) -> tuple[TagSplit, pd.DataFrame]:
    """Read what :func:`write_split` wrote (a split without ``zsl`` / ``gzsl`` columns
    evaluates both settings on every test image)."""
    folder = Path(folder)
    tags = read_json(folder / TAGS_FILE)
    images = pd.read_parquet(folder / IMAGES_FILE)
    return TagSplit(seen=list(tags["seen"]), unseen=list(tags["unseen"])), images


