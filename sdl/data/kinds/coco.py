"""MS-COCO 2014 with the 48/17 zero-shot split of Bansal et al. (ECCV 2018), as used by SDL.

Annotations come from the official ``annotations_trainval2014.zip`` (``annotations/
instances_train2014.json`` and ``instances_val2014.json``: ``images`` with ``id``,
``file_name``, ``coco_url``; ``annotations`` with ``image_id``, ``category_id``;
``categories`` with ``id``, ``name``, ``supercategory``), extracted with safe_extract.
Images come from the per-image ``coco_url`` (or a mirror of the same layout), from the
``train2014.zip``/``val2014.zip`` archives (only the chosen members are extracted), or from a
local folder of already downloaded images. Tags are the 48 seen and 17 unseen classes (SDL's
``data/COCO/cls_ids.pickle``, reproduced below); the 15 other classes are dropped.

Which images, two ways:

* The released split lists (``split_lists``: the folder or base URL holding them). SDL's
  ``train.py``:60-62 reads ``zs_split/train_17_48.json`` (training), ``val_17_48.json`` (the
  GZSL test set, scored with all 65 tags, :177-179) and ``val_unseen.json`` (the ZSL test set,
  17 unseen tags, :180-181); it does not ship them, its README (:54) points to Bansal et al.'s
  zero-shot detection split (https://ankanbansal.com/zsd.html). They are COCO instances files,
  read as ``CocoDetection`` reads them (``helper_functions.py``:185-211 with pycocotools):
  an image is listed when it has an annotation in the file, its labels are the categories of
  its annotations there (matched by name). The ZSL and GZSL test sets are kept apart in the
  manifest's ``test_settings`` column, so each setting is scored on its own images.
* Without the lists, the paper's sentence (section 4.1: "73,774 images with only seen objects
  for training, and 6,608 images containing both seen and unseen objects for testing"):
  train = train2014 images with a seen label and no unseen label; test = val2014 images with
  a seen *and* an unseen label (``test_rule: seen_and_unseen``, the default), or with any of
  the 65 labels (``any``), or with an unseen label (``unseen``). Both settings use the test set.

The counts every rule gives on the official annotations are logged and written to the report
(``coco_report.json``) beside the paper's 73,774 / 6,608 (they could not be computed where
this was written: the annotations were not downloadable there).
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
from sdl.data.manifest import TEST_SETTINGS
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
_SEEN, _UNSEEN = frozenset(COCO_SEEN), frozenset(COCO_UNSEEN)
COCO_UNUSED = tuple(c for c in COCO_CATEGORIES if c not in COCO_SEEN and c not in COCO_UNSEEN)
SUBSETS = ("train2014", "val2014")
REPORT_NAME = "coco_report.json"
TEST_RULES = ("seen_and_unseen", "any", "unseen")
PAPER_IMAGES = {"train": 73774, "test": 6608}  # paper section 4.1


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
    test_rule: Literal["seen_and_unseen", "any", "unseen"] = "seen_and_unseen"  # without split lists
    # The released split lists: a folder or base URL holding them (the lists' names below are
    # relative to it unless they are URLs or absolute paths); null: the test_rule.
    split_lists: str | None = None
    train_list: str = "train_17_48.json"
    gzsl_list: str = "val_17_48.json"
    zsl_list: str | None = "val_unseen.json"  # null: ZSL is scored on the GZSL images

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


def keeps(names: set[str], subset: str, test_rule: str = "seen_and_unseen") -> bool:
    """Whether an image with category ``names`` belongs to the split of ``subset`` by the rule."""
    has_seen, has_unseen = bool(names & _SEEN), bool(names & _UNSEEN)
    if subset == "train2014":
        return has_seen and not has_unseen
    if test_rule == "seen_and_unseen":
        return has_seen and has_unseen
    if test_rule == "unseen":
        return has_unseen
    return has_seen or has_unseen


def split_images(labels: dict[int, set[str]], subset: str, test_rule: str = "seen_and_unseen") -> dict[int, list[str]]:
    """Image id -> sorted seen/unseen tags of the images that belong to the split of ``subset``."""
    vocabulary = _SEEN | _UNSEEN
    return {i: sorted(names & vocabulary) for i, names in labels.items() if keeps(names, subset, test_rule)}


def rule_counts(labels: dict[str, dict[int, set[str]]]) -> dict[str, int]:
    """What each rule gives on the official annotations (per subset), to compare with the
    paper's 73,774 / 6,608: the train rule, the train rule without the 15 unused classes
    either ("only seen objects" read strictly), and every test rule."""
    unused = set(COCO_UNUSED)
    train = split_images(labels["train2014"], "train2014")
    counts = {"train2014_seen_no_unseen": len(train),
              "train2014_seen_only_strict": sum(not labels["train2014"][i] & unused for i in train)}
    for rule in TEST_RULES:
        counts[f"val2014_{rule}"] = len(split_images(labels["val2014"], "val2014", rule))
    return counts


@dataclass
class Chosen:
    """An image the split picks: where it lives, its split, tags and test settings."""

    image_id: int
    subset: str  # train2014 / val2014: its folder
    official: str  # train / test
    tags: list[str]
    settings: list[str] | None = None  # the test settings holding it (None: both)


def _by_rule(labels: dict[str, dict[int, set[str]]], options: CocoOptions) -> list[Chosen]:
    chosen = []
    for subset in SUBSETS:
        split = split_images(labels[subset], subset, options.test_rule)
        official = "train" if subset == "train2014" else "test"
        chosen += [Chosen(i, subset, official, split[i]) for i in sample_evenly(sorted(split), options.max_images)]
    return chosen


def _by_lists(
    options: CocoOptions, raw_dir: Path, sources: Sources, subset_of: dict[int, str]
) -> tuple[list[Chosen], dict[str, Any]]:
    """The images of the released split lists (module doc); counts per list for the report."""
    assert options.split_lists is not None
    vocabulary = _SEEN | _UNSEEN
    lists = {"train": options.train_list, "gzsl": options.gzsl_list, "zsl": options.zsl_list}
    tags: dict[int, set[str]] = {}
    roles: dict[int, set[str]] = {}
    counts: dict[str, Any] = {}
    for role, name in lists.items():
        if name is None:
            continue
        location = join_location(options.split_lists, name)
        path = sources.obtain(location, raw_dir / "zs_split" / Path(urlsplit(location).path).name)
        _, labels, _ = read_instances(path)
        unknown = sorted(set(labels) - set(subset_of))
        if unknown:
            raise InputError(f"{path}: {len(unknown)} image ids are in neither instances_train2014.json nor "
                             f"instances_val2014.json (e.g. {unknown[:3]}); not a COCO 2014 split list")
        counts[f"{role}_list"] = len(labels)
        for image_id, names in labels.items():
            tags.setdefault(image_id, set()).update(names & vocabulary)
            roles.setdefault(image_id, set()).add(role)
    both = sorted(i for i, r in roles.items() if "train" in r and len(r) > 1)
    if both:
        raise InputError(f"{len(both)} images are in the training list and a test list (e.g. {both[:3]}): "
                         f"check split_lists {options.split_lists}")
    chosen = []
    for official in ("train", "test"):
        ids = sorted(i for i, r in roles.items() if ("train" in r) == (official == "train"))
        for image_id in sample_evenly(ids, options.max_images):
            settings = None
            if official == "test" and options.zsl_list is not None:
                settings = sorted(roles[image_id])
            chosen.append(Chosen(image_id, subset_of[image_id], official, sorted(tags[image_id]), settings))
    return chosen, counts


@register_kind("coco", CocoOptions)
def acquire_coco(options: CocoOptions, raw_dir: Path, sources: Sources) -> Acquired:
    """The ``coco`` kind: 48 seen / 17 unseen classes; the released split lists, or the paper's
    rule (train2014 seen-only, val2014 seen and unseen)."""
    files = _annotation_files(options, raw_dir, sources)
    images: dict[int, dict[str, Any]] = {}
    labels: dict[str, dict[int, set[str]]] = {}
    subset_of: dict[int, str] = {}
    for subset in SUBSETS:
        subset_images, labels[subset], categories = read_instances(files[subset])
        unknown = (_SEEN | _UNSEEN) - set(categories.values())
        if unknown:
            raise InputError(f"{files[subset]}: categories lack {sorted(unknown)}; not COCO 2014 instances")
        images.update(subset_images)
        subset_of.update({i: subset for i in subset_images})
    counts = rule_counts(labels)
    log.info("coco: on the official annotations the train rule gives %d train2014 images (seen, no unseen; "
             "%d without the 15 unused classes either) and the test rules %d (seen and unseen) / %d (any) / "
             "%d (unseen) val2014 images; the paper reports %d / %d", counts["train2014_seen_no_unseen"],
             counts["train2014_seen_only_strict"], counts["val2014_seen_and_unseen"], counts["val2014_any"],
             counts["val2014_unseen"], PAPER_IMAGES["train"], PAPER_IMAGES["test"])
    list_counts: dict[str, Any] = {}
    if options.split_lists:
        chosen, list_counts = _by_lists(options, raw_dir, sources, subset_of)
        log.info("coco: the split lists give %s images", list_counts)
    else:
        chosen = _by_rule(labels, options)

    rows: list[dict[str, Any]] = []
    wanted: list[WantedImage] = []
    for item in chosen:
        image = images[item.image_id]
        file_name = Path(str(image["file_name"])).name
        relative = f"{item.subset}/{file_name}"
        url = None
        if options.images == "url":
            url = (join_location(options.image_base_url, relative) if options.image_base_url
                   else str(image.get("coco_url") or f"http://images.cocodataset.org/{relative}"))
        wanted.append(WantedImage(relative, url=url))
        rows.append({"image_id": Path(file_name).stem, "path": f"images/{relative}", "tags": item.tags,
                     "official_split": item.official, "test_settings": item.settings})
    gathered, fetched, failed, failures = _gather(options, raw_dir, sources, wanted)

    columns = ["image_id", "path", "tags", "official_split"]
    if options.split_lists and options.zsl_list is not None:
        columns.append("test_settings")  # ZSL and GZSL on their own image sets
    manifest = pd.DataFrame([r for r in rows if (raw_dir / r["path"]).is_file()], columns=columns)
    tags = pd.DataFrame({"tag": list(COCO_SEEN) + list(COCO_UNSEEN),
                         "role": ["seen"] * len(COCO_SEEN) + ["unseen"] * len(COCO_UNSEEN)})
    test = manifest["official_split"] == "test"
    report: dict[str, Any] = {
        "images": len(manifest),
        "wanted": len(rows),
        "missing": len(rows) - len(manifest),
        "train": int((manifest["official_split"] == "train").sum()),
        "test": int(test.sum()),
        "selection": "split_lists" if options.split_lists else f"test_rule={options.test_rule}",
        **{f"rule_{k}": v for k, v in counts.items()},
        **list_counts,
        "paper_train": PAPER_IMAGES["train"],
        "paper_test": PAPER_IMAGES["test"],
        "fetched": fetched,
        "skipped": gathered.present,
        "local": gathered.local,
        "failed": failed,
        "failures_sample": [list(f) for f in failures[:20]],
        "seen_tags": len(COCO_SEEN),
        "unseen_tags": len(COCO_UNSEEN),
        "unused_classes_dropped": len(COCO_UNUSED),
    }
    if "test_settings" in manifest:
        for setting in TEST_SETTINGS:
            report[f"test_{setting}"] = int(sum(setting in s for s in manifest.loc[test, "test_settings"]))
    write_json(raw_dir / REPORT_NAME, report)
    log.info("coco: %d images in the manifest (%d train, %d test; paper %d / %d), %d missing", report["images"],
             report["train"], report["test"], PAPER_IMAGES["train"], PAPER_IMAGES["test"], report["missing"])
    return Acquired(manifest=manifest, tags=tags, report=report)


def _gather(
    options: CocoOptions, raw_dir: Path, sources: Sources, wanted: list[WantedImage]
) -> tuple[Any, int, int, list[tuple[str, str]]]:
    """Put the wanted images under ``images/``: present, local, per-image URL, or extracted
    from the train/val archives; return the gather report and the fetched / failed counts."""
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
    return gathered, fetched, failed, failures
