"""Open Images v4 (2018_04) with the zero-shot split of LESA (Huynh & Elhamifar, CVPR 2020),
used by BiAM and SDL: 7,186 seen labels (``classes-trainable.txt``, the labels with at least
100 training images) and 400 unseen labels (the most frequent test labels not in training).

Official files under ``https://storage.googleapis.com/openimages/2018_04/``:

- ``class-descriptions.csv``: ``MID,name`` rows, no header in v4 (CRLF; names with commas quoted);
- ``classes-trainable.txt``: the 7,186 seen MIDs, one per line;
- ``<subset>/<subset>-annotations-human-imagelabels.csv``: header
  ``ImageID,Source,LabelName,Confidence``; Confidence 1 is a human-verified positive (a tag),
  Confidence 0 a human-verified *negative*: kept in the manifest's ``negatives`` column, since
  LESA and BiAM evaluate Open Images on 1 / -1 / 0 labels (LESA's extractor:
  ``2 * Confidence - 1`` for the verified labels, 0 for the rest; ``sdl.eval.metrics``,
  protocol "open_images"). Training uses the positives only.

Images: the train (and validation) images with a positive of the vocabulary; every labelled
test image, whatever its labels (LESA's test set is every downloaded image of the test CSV;
a protocol that drops the images without a positive does so when it evaluates).

The unseen labels come from the LESA/BiAM repositories: ``unseen_labels.pkl`` (a pickled
numpy object array of 2,594 MIDs, the candidate unseen labels) and ``top_400_unseen.csv``
(400 integer indices into it, no header, UTF-8 BOM, CRLF). The list is only published as a
pickle, so it is read with :mod:`sdl.safety.safe_pickle` (numpy arrays and plain containers only,
never arbitrary callables); a ``.npy`` is read with ``allow_pickle=False`` and a text file
(one MID per line) is accepted too.

Images come from the public S3 bucket ``open-images-dataset`` (``<subset>/<ImageID>.jpg``),
fetched unsigned, in parallel and resumably, as the official downloader does.

Tags are class names. About a hundred names are shared by several MIDs (e.g. two "Crane"
classes); the first MID (seen before unseen, list order) keeps the plain name and the others
become ``"<name> (<MID>)"``, so every MID keeps its own tag. ``classes.csv`` in the raw folder
maps MID, name, tag and role.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from sdl.data.fetch.locations import join_location
from sdl.data.images import load_rgb
from sdl.data.kinds.registry import (
    Acquired,
    KindOptions,
    Sources,
    WantedImage,
    register_kind,
    sample_evenly,
)
from sdl.safety.atomic import atomic_write_text, write_json
from sdl.safety.errors import InputError
from sdl.safety.safe_pickle import safe_load

log = logging.getLogger(__name__)

OFFICIAL_SPLIT = {"train": "train", "validation": None, "test": "test"}
LABEL_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
REPORT_NAME = "open_images_report.json"
_LESA_FILES = "https://raw.githubusercontent.com/akshitac8/BiAM/main/datasets/OpenImages/2018_04"


@dataclass(frozen=True, kw_only=True)
class OpenImagesOptions(KindOptions):
    """Where Open Images v4 comes from (``download.<dataset>.options``). File options are
    relative to ``base_url`` unless they are URLs or absolute paths."""

    base_url: str = "https://storage.googleapis.com/openimages/2018_04"
    class_descriptions: str = "class-descriptions.csv"
    trainable_classes: str = "classes-trainable.txt"
    labels_pattern: str = "{subset}/{subset}-annotations-human-imagelabels.csv"
    unseen_labels: str = f"{_LESA_FILES}/unseen_labels.pkl"
    top_unseen: str = f"{_LESA_FILES}/top_400_unseen.csv"
    subsets: tuple[Literal["train", "validation", "test"], ...] = ("train", "test")
    bucket: str = "open-images-dataset"
    endpoint_url: str | None = None  # e.g. a local S3 replica
    unsigned: bool = True
    # image_dir: <subset>/<ImageID>.jpg already downloaded; max_images: per subset, over sorted ids

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.subsets:
            raise ValueError("subsets must name at least one of train, validation, test")


# --------------------------------------------------------------------------- parsing


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig")  # BOMs occur (top_400_unseen.csv has one)


def read_class_descriptions(path: Path) -> dict[str, str]:
    """``{MID: name}`` from class-descriptions.csv (no header in v4; a header row is skipped)."""
    names: dict[str, str] = {}
    for row in csv.reader(io.StringIO(_text(path), newline="")):
        if len(row) < 2 or not row[0].strip():
            continue
        mid, name = row[0].strip(), row[1].strip()
        if mid.lower() in ("labelname", "label_name", "mid"):
            continue  # later versions added a header
        names[mid] = name
    return names


def read_mid_list(path: Path) -> list[str]:
    """MIDs one per line (or the first CSV column), order kept, blanks dropped."""
    mids = [line.split(",")[0].strip() for line in _text(path).splitlines()]
    return list(dict.fromkeys(m for m in mids if m))


def read_unseen_candidates(path: Path) -> list[str]:
    """The candidate unseen MIDs of LESA/BiAM (2,594 in the release), in their index order."""
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        # Only published as a pickle: safe_load admits numpy arrays and plain containers and
        # refuses any other global (a pickle can otherwise run code when loaded).
        values = safe_load(path)
    elif suffix == ".npy":
        values = np.load(path, allow_pickle=False)  # a str-dtype array; object arrays are refused
    else:
        return read_mid_list(path)
    mids = [str(v) for v in np.asarray(values).ravel().tolist()]
    if not all(m.startswith("/m/") or m.startswith("/g/") for m in mids):
        raise InputError(f"{path}: expected a list of Open Images MIDs (/m/...), got e.g. {mids[:3]}")
    return mids


def read_top_unseen(path: Path, num_candidates: int) -> list[int]:
    """The indices of top_400_unseen.csv (no header, BOM and CRLF tolerated)."""
    indices = []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        field = line.split(",")[0].strip()
        if not field:
            continue
        try:
            value = int(float(field))
        except ValueError:
            raise InputError(f"{path}: line {number} is not an integer index: {line!r}") from None
        if not 0 <= value < num_candidates:
            raise InputError(f"{path}: line {number}: index {value} outside the {num_candidates} unseen candidates")
        indices.append(value)
    if len(set(indices)) != len(indices):
        raise InputError(f"{path}: repeated indices")
    return indices


def read_image_labels(path: Path) -> pd.DataFrame:
    """The verified rows of an image-level label CSV: columns ImageID, LabelName and positive
    (True: Confidence 1, a tag; False: Confidence 0, a verified negative)."""
    header = _text_head(path)
    missing = [c for c in ("ImageID", "LabelName", "Confidence") if c not in header]
    if missing:
        raise InputError(f"{path}: header {header} lacks {missing}; expected {','.join(LABEL_COLUMNS)}")
    frame = pd.read_csv(path, usecols=["ImageID", "LabelName", "Confidence"], encoding="utf-8-sig",
                        dtype={"ImageID": str, "LabelName": "category", "Confidence": float})
    # Confidence 0 marks a verified negative: the label is NOT in the image.
    labels = frame[["ImageID", "LabelName"]].astype({"LabelName": str})
    return labels.assign(positive=(frame["Confidence"] >= 0.5).to_numpy())


def _text_head(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [c.strip() for c in next(csv.reader([handle.readline()]), [])]


def tag_names(seen: list[str], unseen: list[str], names: dict[str, str]) -> dict[str, str]:
    """MID -> tag: its name, or ``"<name> (<MID>)"`` when an earlier MID already has the name."""
    tags: dict[str, str] = {}
    taken: set[str] = set()
    for mid in seen + unseen:
        if mid not in names:
            raise InputError(f"class-descriptions.csv has no name for {mid}")
        tag = names[mid]
        if tag.lower() in taken:
            tag = f"{tag} ({mid})"
        taken.add(tag.lower())
        tags[mid] = tag
    return tags


# --------------------------------------------------------------------------- acquisition


@register_kind("open_images", OpenImagesOptions)
def acquire_open_images(options: OpenImagesOptions, raw_dir: Path, sources: Sources) -> Acquired:
    """The ``open_images`` kind: 7,186 seen / 400 unseen labels, images from S3."""
    lists = raw_dir / "lists"

    def get(relative: str) -> Path:
        location = join_location(options.base_url, relative)
        return sources.obtain(location, lists / Path(urlsplit(location).path).name)

    names = read_class_descriptions(get(options.class_descriptions))
    seen = read_mid_list(get(options.trainable_classes))
    candidates = read_unseen_candidates(get(options.unseen_labels))
    unseen = [candidates[i] for i in read_top_unseen(get(options.top_unseen), len(candidates))]
    overlap = set(seen) & set(unseen)
    if overlap:
        raise InputError(f"{len(overlap)} unseen labels are also trainable, e.g. {sorted(overlap)[:3]}")
    tag_of = tag_names(seen, unseen, names)
    role_of = {**{m: "seen" for m in seen}, **{m: "unseen" for m in unseen}}
    classes = pd.DataFrame({"mid": seen + unseen, "name": [names[m] for m in seen + unseen],
                            "tag": [tag_of[m] for m in seen + unseen], "role": [role_of[m] for m in seen + unseen]})
    atomic_write_text(raw_dir / "classes.csv", classes.to_csv(index=False))

    rows: list[dict[str, Any]] = []
    counts: dict[str, Any] = {}
    for subset in options.subsets:
        labels = read_image_labels(get(options.labels_pattern.format(subset=subset)))
        labelled = sorted(labels["ImageID"].unique())
        labels = labels.loc[labels["LabelName"].isin(set(role_of))].drop_duplicates()
        positive = labels.loc[labels["positive"]]
        per_image = positive.groupby("ImageID")["LabelName"].agg(list).to_dict()
        negative = labels.loc[~labels["positive"]].groupby("ImageID")["LabelName"].agg(list).to_dict()
        # every labelled test image (LESA's test set); elsewhere the images with a tag to learn
        pool = labelled if subset == "test" else sorted(per_image)
        image_ids = sample_evenly(pool, options.max_images)
        counts[subset] = {"labelled_images": len(labelled), "with_vocabulary_tags": len(per_image),
                          "with_verified_negatives": len(negative), "chosen": len(image_ids)}
        if subset == "train":
            counts[subset]["with_unseen_tags"] = int(
                positive.loc[positive["LabelName"].isin(set(unseen)), "ImageID"].nunique())
        for image_id in image_ids:
            tags_ = sorted(tag_of[m] for m in per_image.get(image_id, []))
            negatives = sorted({tag_of[m] for m in negative.get(image_id, [])} - set(tags_))
            rows.append({"image_id": image_id, "path": f"images/{subset}/{image_id}.jpg", "tags": tags_,
                         "negatives": negatives, "official_split": OFFICIAL_SPLIT[subset], "subset": subset})

    image_root = raw_dir / "images"
    # local copies are taken as they are (Open Images' own files); fetched ones must decode
    wanted = [WantedImage(f"{r['subset']}/{r['image_id']}.jpg", bucket=options.bucket,
                          key=f"{r['subset']}/{r['image_id']}.jpg") for r in rows]
    result = sources.gather(wanted, image_root, load_rgb, validate_local=False, desc="open_images images")

    manifest = pd.DataFrame([r for r in rows if (raw_dir / r["path"]).is_file()],
                            columns=["image_id", "path", "tags", "negatives", "official_split", "subset"])
    manifest = manifest.drop(columns="subset")
    tags = classes[["tag", "role"]]
    report: dict[str, Any] = {
        "images": len(manifest),
        "wanted": len(rows),
        "missing": len(rows) - len(manifest),
        "fetched": result.fetched,
        "skipped": result.present,
        "local": result.local,
        "failed": result.failed,
        "failures_sample": [list(f) for f in result.failures[:20]],
        "subsets": counts,
        "seen_tags": len(seen),
        "unseen_tags": len(unseen),
        "unseen_candidates": len(candidates),
        "renamed_duplicate_names": sum(tag_of[m] != names[m] for m in seen + unseen),
        "verified_negatives": int(manifest["negatives"].map(len).sum()),
        "test_without_tags": int(((manifest["official_split"] == "test") & (manifest["tags"].map(len) == 0)).sum()),
    }
    write_json(raw_dir / REPORT_NAME, report)
    log.info("open_images: %d images (%s), %d missing; %d seen / %d unseen tags", report["images"],
             ", ".join(f"{s}: {c['chosen']}" for s, c in counts.items()), report["missing"], len(seen), len(unseen))
    return Acquired(manifest=manifest, tags=tags, report=report)
