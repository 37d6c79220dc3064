"""NUS-WIDE (Chua et al., 2009) from its official lists and Flickr image URLs.

Official files (the NUS-WIDE site ships them as ConceptsList.zip, NUS_WID_Tags.zip,
Groundtruth.zip, ImageList.zip and NUS-WIDE-urls.rar):

- ``Concepts81.txt``: the 81 human-annotated concepts, one per line (CRLF);
- ``NUS_WID_Tags/TagList1k.txt``: the 1,000 most frequent Flickr tags (CRLF);
- ``NUS_WID_Tags/AllTags1k.txt``: one row per image of 1,000 tab-separated 0/1 values;
- ``AllLabels/Labels_<concept>.txt``: one 0/1 per line and image (the human ground truth);
- ``ImageList/Imagelist.txt``: every image as ``C:\\ImageData\\Flickr\\<folder>\\<file>.jpg``.
  Its order is the row order of AllTags1k.txt and of every Labels_<concept>.txt;
- ``ImageList/TrainImagelist.txt`` / ``TestImagelist.txt``: ``<folder>\\<file>.jpg`` per image;
- ``NUS-WIDE-urls.txt``: a header line, then whitespace columns Photo_file, Photo_id,
  URL_Large, URL_Middle, URL_Small, URL_Original ("null" where there is none).

Zero-shot split of LESA (Huynh & Elhamifar, CVPR 2020), BiAM and SDL: seen = the 1,000 tags
minus those that are also concepts (75 of them, so 925), unseen = the 81 concepts, 1,006 in
GZSL. As in LESA, an image's seen tags come from AllTags1k (Flickr tags) and its unseen tags
from AllLabels (human labels): the AllTags1k columns of the 75 shared names are ignored, so a
name never appears twice. Many Flickr URLs are dead: failed images are counted, excluded
from the manifest and reported; images already downloaded can be supplied in ``image_dir``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from sdl.data.fetch.errors import FetchError
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
from sdl.safety.atomic import write_json
from sdl.safety.errors import InputError

log = logging.getLogger(__name__)

URL_COLUMNS = {"large": 2, "middle": 3, "small": 4, "original": 5}  # in NUS-WIDE-urls.txt
REPORT_NAME = "nus_wide_report.json"
_WHITESPACE = np.array([9, 10, 13, 32], dtype=np.uint8)  # tab, LF, CR, space
_BLOCK_LINES = 8192


@dataclass(frozen=True, kw_only=True)
class NusWideOptions(KindOptions):
    """Where the NUS-WIDE lists and images come from (``download.<dataset>.options``).

    File options are relative to ``lists`` unless they are URLs or absolute paths.
    """

    lists: str  # base URL or local folder of the official lists (extracted layout)
    urls: str | None = "NUS-WIDE-urls.txt"  # the image URL list; null: only image_dir
    archives: tuple[str, ...] = ()  # official zips under ``lists`` to fetch and extract first
    concepts_path: str = "Concepts81.txt"
    tag_list_path: str = "NUS_WID_Tags/TagList1k.txt"
    all_tags_path: str = "NUS_WID_Tags/AllTags1k.txt"
    labels_dir: str = "AllLabels"
    image_list_dir: str = "ImageList"
    # image_dir: <folder>/<file>.jpg as in ImageList; max_images: spread evenly over the image list
    url_size: Literal["large", "middle", "small", "original"] = "middle"
    # Images with neither a seen tag nor a concept label: "train" leaves out those that are
    # not on TestImagelist.txt and keeps the test ones, which LESA and BiAM evaluate (all
    # 107,859 test images; evaluate.<d>.protocol "all"; "sdl" drops them when it evaluates);
    # true leaves out every untagged image, false none.
    drop_untagged: bool | Literal["train"] = "train"
    min_image_bytes: int = 0  # LESA drops files <= 4000 bytes: Flickr's "photo unavailable" stand-ins
    retries: int = 3
    timeout: float = 30.0


# --------------------------------------------------------------------------- parsing


def read_lines(path: Path) -> list[str]:
    """Stripped lines of a text list (UTF-8, BOM and CRLF tolerated), trailing blanks dropped."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # a few Flickr-era lists are not UTF-8
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_names(path: Path) -> list[str]:
    """A list of names, one per line, duplicates and blank lines dropped (order kept)."""
    return list(dict.fromkeys(line for line in read_lines(path) if line))


def image_key(entry: str) -> str:
    """``<folder>/<file>`` of an image entry: ``C:\\ImageData\\Flickr\\actor\\0001_2.jpg`` and
    ``actor\\0001_2.jpg`` both give ``actor/0001_2.jpg``, the key shared by every list."""
    path = entry.strip().replace("\\", "/")
    if "Flickr/" in path:
        path = path.split("Flickr/", 1)[1]
    parts = [p for p in path.split("/") if p]
    if len(parts) > 2 and ":" in parts[0]:
        parts = parts[-2:]  # another drive/prefix: keep <folder>/<file>
    return "/".join(parts)


def read_binary_rows(path: Path, num_rows: int, num_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (row, column) of the 1s in a text matrix of 0/1 values, one row per line.

    Parsed in blocks of lines as bytes (AllTags1k.txt holds 270 M values): the digits of a
    block are picked out with numpy and must number exactly ``num_cols`` per line.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    line_number = 0
    with open(path, "rb") as handle:
        while True:
            block = list(itertools.islice(handle, _BLOCK_LINES))
            if not block:
                break
            if line_number == 0 and block[0].startswith(b"\xef\xbb\xbf"):
                block[0] = block[0][3:]
            # A trailing blank line at the end of the file is not a row.
            while block and not block[-1].strip() and len(block) + line_number > num_rows:
                block.pop()
            data = np.frombuffer(b"".join(block), dtype=np.uint8)
            digits = (data == 48) | (data == 49)
            if not (digits | np.isin(data, _WHITESPACE)).all():
                bad = next(i for i, line in enumerate(block) if line.strip(b"01 \t\r\n"))
                raise InputError(f"{path}: line {line_number + bad + 1} holds something other than 0/1 values")
            values = data[digits] - 48
            if values.size != len(block) * num_cols:
                for i, line in enumerate(block):
                    count = sum(line.count(c) for c in (b"0", b"1"))
                    if count != num_cols:
                        raise InputError(f"{path}: line {line_number + i + 1} has {count} values, expected {num_cols}")
            row, col = np.nonzero(values.reshape(len(block), num_cols))
            rows.append(row + line_number)
            cols.append(col)
            line_number += len(block)
    if line_number != num_rows:
        raise InputError(f"{path}: {line_number} rows, but ImageList/Imagelist.txt lists {num_rows} images")
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def read_url_list(path: Path, size: str) -> tuple[dict[str, str], int]:
    """``{image key: URL of the chosen size}`` from NUS-WIDE-urls.txt ("null" left out) and the
    number of malformed lines."""
    column = URL_COLUMNS[size]
    urls: dict[str, str] = {}
    malformed = 0
    for line in read_lines(path):
        fields = line.split()
        if not fields or fields[0].lower() == "photo_file":
            continue  # blank or the header line
        if len(fields) != 6:
            malformed += 1
            continue
        url = fields[column]
        if url.lower() != "null":
            urls[image_key(fields[0])] = url
    return urls, malformed


# --------------------------------------------------------------------------- acquisition


@dataclass(frozen=True)
class NusWideLists:
    """The parsed lists: seen/unseen tag names, image keys in Imagelist order, their splits
    and their positive tags."""

    seen: list[str]
    unseen: list[str]
    keys: list[str]
    splits: list[str | None]
    tags: list[list[str]]


def _resolver(options: NusWideOptions, raw_dir: Path, sources: Sources) -> Callable[[str], Path]:
    """A function giving the local path of a list file, fetching or extracting as needed."""
    lists_dir = raw_dir / "lists"
    if options.archives:
        for archive in options.archives:
            location = join_location(options.lists, archive)
            sources.extract(sources.obtain(location, raw_dir / "downloads" / Path(archive).name), lists_dir)

        def extracted(relative: str) -> Path:
            path = lists_dir / relative
            if not path.is_file():
                raise FetchError(str(path), f"not found in the extracted archives {list(options.archives)}")
            return path

        return extracted

    def fetched(relative: str) -> Path:
        return sources.obtain(join_location(options.lists, relative), lists_dir / relative)

    return fetched


def load_lists(options: NusWideOptions, raw_dir: Path, sources: Sources) -> NusWideLists:
    """Fetch (if remote) and parse the official lists into tags per image."""
    resolve = _resolver(options, raw_dir, sources)
    concepts = read_names(resolve(options.concepts_path))
    tag_list = read_names(resolve(options.tag_list_path))
    concept_set = set(concepts)
    seen_columns = [i for i, tag in enumerate(tag_list) if tag not in concept_set]
    seen = [tag_list[i] for i in seen_columns]
    entries = read_lines(resolve(f"{options.image_list_dir}/Imagelist.txt"))
    keys = [image_key(e) for e in entries]
    if len(set(keys)) != len(keys):
        raise InputError("ImageList/Imagelist.txt lists an image twice")
    index = {key: i for i, key in enumerate(keys)}
    splits: list[str | None] = [None] * len(keys)
    for split, name in (("train", "TrainImagelist.txt"), ("test", "TestImagelist.txt")):
        unknown = 0
        for entry in read_lines(resolve(f"{options.image_list_dir}/{name}")):
            if not entry:
                continue
            position = index.get(image_key(entry))
            if position is None:
                unknown += 1
            else:
                splits[position] = split
        if unknown:
            log.warning("nus_wide: %d entries of %s are not in Imagelist.txt", unknown, name)

    tags: list[list[str]] = [[] for _ in keys]
    rows, cols = read_binary_rows(resolve(options.all_tags_path), len(keys), len(tag_list))
    is_seen = np.zeros(len(tag_list), dtype=bool)
    is_seen[seen_columns] = True
    keep = is_seen[cols]  # the 75 concept columns of AllTags1k are Flickr tags, not labels
    for row, col in zip(rows[keep].tolist(), cols[keep].tolist(), strict=True):
        tags[row].append(tag_list[col])
    for concept in concepts:
        rows, _ = read_binary_rows(resolve(f"{options.labels_dir}/Labels_{concept}.txt"), len(keys), 1)
        for row in rows.tolist():
            tags[row].append(concept)
    return NusWideLists(seen=seen, unseen=concepts, keys=keys, splits=splits, tags=tags)


def _drops_untagged(options: NusWideOptions, split: str | None) -> bool:
    """Whether an untagged image of official ``split`` is left out (``drop_untagged``)."""
    if options.drop_untagged == "train":
        return split != "test"
    return bool(options.drop_untagged)


def image_validator(min_bytes: int) -> Callable[[Path], None]:
    """Reject files too small to be a photo (dead-photo stand-ins) or not decodable."""

    def validate(path: Path) -> None:
        size = path.stat().st_size
        if size < min_bytes:
            raise ValueError(f"only {size} bytes (< min_image_bytes {min_bytes}): a stand-in for a deleted photo")
        load_rgb(path)

    return validate


@register_kind("nus_wide", NusWideOptions)
def acquire_nus_wide(options: NusWideOptions, raw_dir: Path, sources: Sources) -> Acquired:
    """The ``nus_wide`` kind: lists, tags, zero-shot roles and images (see the module doc)."""
    lists = load_lists(options, raw_dir, sources)
    candidates = [i for i in range(len(lists.keys)) if lists.tags[i] or not _drops_untagged(options, lists.splits[i])]
    untagged = len(lists.keys) - len(candidates)
    chosen = sample_evenly(candidates, options.max_images)

    validate = image_validator(options.min_image_bytes)
    image_root = raw_dir / "images"
    # present or in image_dir first: the URL list is only read when something must be fetched
    gathered = sources.gather([WantedImage(lists.keys[i]) for i in chosen], image_root, validate,
                              desc="nus_wide images")
    urls: dict[str, str] = {}
    malformed = 0
    if gathered.unsourced and options.urls is not None:
        urls, malformed = read_url_list(_url_file(options, raw_dir, sources), options.url_size)
    fetched = sources.gather([WantedImage(key, url=urls[key]) for key in gathered.unsourced if key in urls],
                             image_root, validate, desc="nus_wide images")
    no_url = len(gathered.unsourced) - sum(key in urls for key in gathered.unsourced)

    rows = []
    for i in chosen:
        key = lists.keys[i]
        if (image_root / key).is_file():
            rows.append({"image_id": key.rsplit(".", 1)[0].replace("/", "_"), "path": f"images/{key}",
                         "tags": lists.tags[i], "official_split": lists.splits[i]})
    manifest = pd.DataFrame(rows, columns=["image_id", "path", "tags", "official_split"])
    tags = pd.DataFrame({"tag": lists.seen + lists.unseen,
                         "role": ["seen"] * len(lists.seen) + ["unseen"] * len(lists.unseen)})
    missing = len(chosen) - len(manifest)
    report: dict[str, Any] = {
        "images": len(manifest),
        "missing": missing,
        "listed": len(lists.keys),
        "chosen": len(chosen),
        "wanted": len(chosen),
        "untagged_dropped": untagged,
        "untagged_test_kept": int(sum(not lists.tags[i] and lists.splits[i] == "test" for i in chosen)),
        "local": gathered.local,
        "fetched": fetched.fetched,
        "skipped": gathered.present + fetched.present,
        "failed": fetched.failed,
        "rejected_local": gathered.rejected_local,
        "no_url": no_url,
        "malformed_url_lines": malformed,
        "train": int((manifest["official_split"] == "train").sum()),
        "test": int((manifest["official_split"] == "test").sum()),
        "seen_tags": len(lists.seen),
        "unseen_tags": len(lists.unseen),
        "failures_sample": [list(f) for f in (gathered.failures + fetched.failures)[:20]],
    }
    write_json(raw_dir / REPORT_NAME, report)
    log.info("nus_wide: %d images (%d train, %d test), %d missing (dead or no URL, rejected); %d seen / %d unseen tags",
             report["images"], report["train"], report["test"], missing, len(lists.seen), len(lists.unseen))
    return Acquired(manifest=manifest, tags=tags, report=report)


def _url_file(options: NusWideOptions, raw_dir: Path, sources: Sources) -> Path:
    """NUS-WIDE-urls.txt, fetched when remote; a .zip holding it is extracted (the official
    .rar is not: unpack it once and point ``urls`` at the text file)."""
    assert options.urls is not None
    location = join_location(options.lists, options.urls)
    path = sources.obtain(location, raw_dir / "downloads" / Path(urlsplit(location).path).name)
    if path.suffix.lower() != ".zip":
        return path
    extracted = [p for p in sources.extract(path, raw_dir / "lists") if p.name.lower() == "nus-wide-urls.txt"]
    if not extracted:
        raise FetchError(location, "the archive holds no NUS-WIDE-urls.txt")
    return extracted[0]
