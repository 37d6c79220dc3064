"""MS-COCO 2014 with the 48/17 zero-shot split of Bansal et al. (ECCV 2018), as used by SDL.

Annotations come from the official ``annotations_trainval2014.zip`` (``annotations/
instances_train2014.json`` and ``instances_val2014.json``: ``images`` with ``id``,
``file_name``, ``coco_url``; ``annotations`` with ``image_id``, ``category_id``;
``categories`` with ``id``, ``name``, ``supercategory``), extracted with safe_extract.
Images come from the per-image ``coco_url`` (or a mirror of the same layout), from the
``train2014.zip``/``val2014.zip`` archives (only the chosen members are extracted), or from a
local folder of already downloaded images.

Split (SDL's released train.py reads ``zs_split/train_17_48.json``, ``val_17_48.json`` and
``val_unseen.json``, which it does not ship; its ``cls_ids.pickle`` gives the 48 seen and 17
unseen class indices, reproduced below): train = train2014 images with at least one seen
label and no unseen label; test = val2014 images with at least one seen or unseen label
(``test_rule: any``, the val_17_48 set) or, with ``test_rule: unseen``, at least one unseen
label (the val_unseen set). Tags are seen and unseen labels; the 15 other classes are dropped.

The paper reports 73,774 train / 6,608 test images. The counts this rule gives on the real
2014 annotations are UNKNOWN here (the annotations could not be downloaded where this was
written); the kind logs them and puts them in its report, so compare on a real run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pandas as pd

from sdl.data.fetch.errors import FetchError
from sdl.data.fetch.locations import is_remote, join_location, local_path
from sdl.data.images import load_rgb
from sdl.data.kinds.registry import (
    Acquired,
    KindOptions,
    Sources,
    WantedImage,
    register_kind,
    sample_evenly,
)
from sdl.safety.atomic import write_json
from sdl.safety.errors import InputError

log = logging.getLogger(__name__)

# The 80 COCO categories in id order: index i here is the class index of SDL's cls_ids.pickle
# (its CocoDetection numbers categories in sorted-id order).
COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
# Bansal et al.'s 17 unseen classes: cls_ids["test"] of SDL's data/COCO/cls_ids.pickle
# (indices 4 5 15 16 19 20 25 27 31 36 41 43 55 57 66 71 76). That pickle was read with
# sdl.safety.safe_pickle.safe_load (a dict of sets of ints), never plain pickle, which could run code.
COCO_UNSEEN = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard",
    "skateboard", "cup", "knife", "cake", "couch", "keyboard", "sink", "scissors",
)
# The 48 seen classes: cls_ids["train"] of the same pickle (indices 0 1 2 3 6 7 8 13 14 17 18
# 21 22 23 24 26 28 29 30 33 37 39 42 44 45 46 47 48 49 50 51 53 54 56 59 61 62 63 64 65 68 69
# 70 72 73 74 75 79), in id order.
COCO_SEEN = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse",
    "sheep", "bear", "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis",
    "kite", "surfboard", "bottle", "fork", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed", "toilet", "tv", "laptop",
    "mouse", "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock", "vase",
    "toothbrush",
)
COCO_UNUSED = tuple(c for c in COCO_CATEGORIES if c not in COCO_SEEN and c not in COCO_UNSEEN)
SUBSETS = ("train2014", "val2014")
REPORT_NAME = "coco_report.json"


@dataclass(frozen=True, kw_only=True)
class CocoOptions(KindOptions):
    """Where COCO 2014 comes from (``download.<dataset>.options``)."""

    # annotations_trainval2014.zip (URL or path), or a folder holding instances_*.json
    # directly or under annotations/.
    annotations: str = "http://images.cocodataset.org/annotations/annotations_trainval2014.zip"
    images: Literal["url", "archive"] = "url"  # per-image coco_url, or the train/val zips
    image_base_url: str | None = None  # mirror: <base>/<train2014|val2014>/<file_name> instead of coco_url
    train_archive: str = "http://images.cocodataset.org/zips/train2014.zip"
    val_archive: str = "http://images.cocodataset.org/zips/val2014.zip"
    # image_dir: train2014/ and val2014/ already downloaded; max_images: per split, spread over image ids
    test_rule: Literal["any", "unseen"] = "any"


def _annotation_files(options: CocoOptions, raw_dir: Path, sources: Sources) -> dict[str, Path]:
    """instances_train2014.json and instances_val2014.json as local files."""
    names = {subset: f"instances_{subset}.json" for subset in SUBSETS}
    location = options.annotations
    if location.lower().split("?")[0].endswith(".zip"):
        archive = sources.obtain(location, raw_dir / "downloads" / Path(urlsplit(location).path).name)
        sources.extract(archive, raw_dir, members=[f"annotations/{n}" for n in names.values()])
        folder = raw_dir / "annotations"
    elif is_remote(location):
        folder = raw_dir / "annotations"
        for name in names.values():
            sources.obtain(join_location(location, name), folder / name)
    else:
        folder = local_path(location)
        if not (folder / names["train2014"]).is_file() and (folder / "annotations").is_dir():
            folder = folder / "annotations"
    files = {subset: folder / name for subset, name in names.items()}
    for path in files.values():
        if not path.is_file():
            raise FetchError(str(path), "COCO annotation file not found")
    return files


def read_instances(path: Path) -> tuple[dict[int, dict[str, Any]], dict[int, set[str]], dict[int, str]]:
    """Images by id, the category names of each image's annotations, and categories by id."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(f"{path}: no {key!r} field; not a COCO instances file")
    categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    images = {int(image["id"]): image for image in data["images"]}
    labels: dict[int, set[str]] = {}
    for annotation in data["annotations"]:
        # Crowd annotations count too, as in pycocotools' imgToAnns used by SDL's loader.
        labels.setdefault(int(annotation["image_id"]), set()).add(categories[int(annotation["category_id"])])
    return images, labels, categories


def split_images(labels: dict[int, set[str]], subset: str, test_rule: str = "any") -> dict[int, list[str]]:
    """Image id -> sorted seen/unseen tags of the images that belong to the split of ``subset``."""
    seen, unseen = set(COCO_SEEN), set(COCO_UNSEEN)
    chosen: dict[int, list[str]] = {}
    for image_id, names in labels.items():
        has_seen, has_unseen = bool(names & seen), bool(names & unseen)
        if subset == "train2014":
            keep = has_seen and not has_unseen
        elif test_rule == "unseen":
            keep = has_unseen
        else:
            keep = has_seen or has_unseen
        if keep:
            chosen[image_id] = sorted(names & (seen | unseen))
    return chosen


@register_kind("coco", CocoOptions)
def acquire_coco(options: CocoOptions, raw_dir: Path, sources: Sources) -> Acquired:
    """The ``coco`` kind: 48 seen / 17 unseen classes, train2014 seen-only, val2014 test."""
    files = _annotation_files(options, raw_dir, sources)
    rows: list[dict[str, Any]] = []
    wanted: list[WantedImage] = []
    counts: dict[str, Any] = {}
    for subset in SUBSETS:
        images, labels, categories = read_instances(files[subset])
        unknown = (set(COCO_SEEN) | set(COCO_UNSEEN)) - set(categories.values())
        if unknown:
            raise InputError(f"{files[subset]}: categories lack {sorted(unknown)}; not COCO 2014 instances")
        split = split_images(labels, subset, options.test_rule)
        counts[f"{subset}_rule"] = len(split)
        official = "train" if subset == "train2014" else "test"
        for image_id in sample_evenly(sorted(split), options.max_images):
            image = images[image_id]
            file_name = str(image["file_name"])
            relative = f"{subset}/{file_name}"
            url = None
            if options.images == "url":
                url = (join_location(options.image_base_url, relative) if options.image_base_url
                       else str(image.get("coco_url") or f"http://images.cocodataset.org/{relative}"))
            wanted.append(WantedImage(relative, url=url))
            rows.append({"image_id": Path(file_name).stem, "path": f"images/{relative}",
                         "tags": split[image_id], "official_split": official})
    log.info("coco: the split rule gives %d train2014 images (seen labels only) and %d val2014 test images "
             "(test_rule=%s); the paper reports 73,774 / 6,608", counts["train2014_rule"], counts["val2014_rule"],
             options.test_rule)

    image_root = raw_dir / "images"
    # local copies are taken as they are (COCO's own files); fetched ones must decode
    gathered = sources.gather(wanted, image_root, load_rgb, validate_local=False, desc="coco images")
    fetched, failed, failures = gathered.fetched, gathered.failed, list(gathered.failures)
    for subset, location in (("train2014", options.train_archive), ("val2014", options.val_archive)):
        pending = [r for r in gathered.unsourced if r.startswith(f"{subset}/")]  # archive mode
        if not pending:
            continue
        try:
            archive = sources.obtain(location, raw_dir / "downloads" / Path(urlsplit(location).path).name)
            extracted = sources.extract(archive, image_root, members=pending)
        except FetchError as error:
            failed += len(pending)
            failures.append((subset, str(error)))
            continue
        fetched += len(extracted)
        failed += len(pending) - len(extracted)

    manifest = pd.DataFrame([r for r in rows if (raw_dir / r["path"]).is_file()],
                            columns=["image_id", "path", "tags", "official_split"])
    tags = pd.DataFrame({"tag": list(COCO_SEEN) + list(COCO_UNSEEN),
                         "role": ["seen"] * len(COCO_SEEN) + ["unseen"] * len(COCO_UNSEEN)})
    report: dict[str, Any] = {
        "images": len(manifest),
        "wanted": len(rows),
        "missing": len(rows) - len(manifest),
        "train": int((manifest["official_split"] == "train").sum()),
        "test": int((manifest["official_split"] == "test").sum()),
        "train_rule_total": counts["train2014_rule"],
        "test_rule_total": counts["val2014_rule"],
        "test_rule": options.test_rule,
        "fetched": fetched,
        "skipped": gathered.present,
        "local": gathered.local,
        "failed": failed,
        "failures_sample": [list(f) for f in failures[:20]],
        "seen_tags": len(COCO_SEEN),
        "unseen_tags": len(COCO_UNSEEN),
        "unused_classes_dropped": len(COCO_UNUSED),
    }
    write_json(raw_dir / REPORT_NAME, report)
    log.info("coco: %d images in the manifest (%d train, %d test), %d missing", report["images"], report["train"],
             report["test"], report["missing"])
    return Acquired(manifest=manifest, tags=tags, report=report)
