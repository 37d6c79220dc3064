"""Local stand-ins for the internet in the dataset tests.

- :class:`ReplicaHTTPServer`: a threaded HTTP server on 127.0.0.1 (random port) serving a
  folder, with byte ranges and injectable faults per path (status codes N times, 429 with
  Retry-After, a connection reset mid-body, a body shorter than its Content-Length, a server
  that ignores Range), counting hits and recording Range headers.
- :class:`MotoS3`: ``moto_server`` from the venv as a subprocess on a free port.
- ``write_*_replica``: small datasets in the exact official formats (real field names,
  headers, BOMs, CRLF line ends, backslash paths), with tiny real JPEGs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import numpy as np
import requests
from PIL import Image

VENV_BIN = Path(sys.executable).parent

# --------------------------------------------------------------------------- HTTP replica


@dataclass
class Fault:
    """A fault served for the next ``times`` GETs of a path."""

    kind: str  # "status" | "drop" | "truncate" | "ignore_range"
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    fraction: float = 0.5  # share of the body sent before a drop/truncation


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        replica = self.server.replica
        path = unquote(urlsplit(self.path).path).lstrip("/")
        with replica.lock:
            if not head:
                replica.hits[path] += 1
            if "Range" in self.headers:
                replica.ranges[path].append(self.headers["Range"])
            fault = None
            queue = replica.faults.get(path, [])
            if queue and not head:
                fault = queue[0]
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
        file = (replica.root / path).resolve()
        if replica.root.resolve() not in file.parents or not file.is_file():
            self._empty(404)
            return
        if fault is not None and fault.kind == "status":
            self._empty(fault.status, {"Retry-After": fault.retry_after} if fault.retry_after else {})
            return
        body = file.read_bytes()
        size = len(body)
        status, start = 200, 0
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        requested = self.headers.get("Range")
        if requested and (fault is None or fault.kind != "ignore_range"):
            first = int(requested.split("=", 1)[1].split("-", 1)[0])
            if first >= size:
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            status, start = 206, first
            headers["Content-Range"] = f"bytes {first}-{size - 1}/{size}"
        payload = body[start:]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if head:
            return
        if fault is not None and fault.kind in ("drop", "truncate"):
            self.wfile.write(payload[: max(1, int(len(payload) * fault.fraction))])
            self.wfile.flush()
            if fault.kind == "drop":  # reset: SO_LINGER 0 makes close() send RST
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    replica: ReplicaHTTPServer


class ReplicaHTTPServer:
    """Serve ``root`` on 127.0.0.1 at a free port until :meth:`close`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits: Counter[str] = Counter()
        self.ranges: dict[str, list[str]] = defaultdict(list)
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.replica = self
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def add_fault(self, path: str, kind: str, times: int = 1, **kwargs: Any) -> None:
        """Serve ``kind`` (see :class:`Fault`) for the next ``times`` GETs of ``path``."""
        with self.lock:
            self.faults[path.lstrip("/")].append(Fault(kind=kind, times=times, **kwargs))

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.ranges.clear()
            self.faults.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- S3 replica


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoS3:
    """``moto_server`` on 127.0.0.1; buckets are filled with dummy credentials while the code
    under test reads anonymously (objects are uploaded public-read, as in the real bucket)."""

    CREDENTIALS: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
    }

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **self.CREDENTIALS}
        self.process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.endpoint_url, timeout=1)
                break
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                                   aws_access_key_id="test", aws_secret_access_key="test")

    def create_bucket(self, name: str) -> None:
        assert len(name) >= 3, "S3 bucket names have at least 3 characters"
        self.client.create_bucket(Bucket=name)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --------------------------------------------------------------------------- images


def tiny_jpeg(seed: int, size: int = 12) -> bytes:
    """A small real JPEG with seeded noise (distinct bytes per seed)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write(path: Path, data: bytes | str, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = (data.replace("\n", "\r\n") if crlf else data).encode("utf-8")
    path.write_bytes(data)


# --------------------------------------------------------------------------- NUS-WIDE

NUS_CONCEPTS = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars",
    "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog",
    "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost", "garden",
    "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map", "military", "moon",
    "mountain", "nighttime", "ocean", "person", "plane", "plants", "police", "protest", "railroad",
    "rainbow", "reflection", "road", "rocks", "running", "sand", "sign", "sky", "snow", "soccer",
    "sports", "statue", "street", "sun", "sunset", "surf", "swimmers", "tattoo", "temple", "tiger",
    "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water", "waterfall", "wedding",
    "whales", "window", "zebra",
)
NUS_CONCEPTS_NOT_TAGS = ("computer", "fire", "map", "swimmers", "tattoo", "whales")  # 6 of 81: 75 shared
NUS_FOLDERS = ("actor", "beach", "zebra")


@dataclass
class NusReplica:
    lists_dir: Path  # serve or read the lists from here
    images_dir: Path  # the "Flickr" images, served at flickr/<folder>/<file>
    keys: list[str]  # <folder>/<file> in Imagelist order
    tags: dict[str, list[str]]  # expected positive tags per key (seen + concepts)
    splits: dict[str, str]
    dead: set[str]  # keys whose URL answers 404
    null_url: set[str]  # keys whose URL is "null"
    untagged: set[str]
    seen: list[str]
    tag_list: list[str]


def write_nus_wide_replica(root: Path, image_base_url: str, num_images: int = 30, seed: int = 0,
                           untagged_test: bool = False) -> NusReplica:
    """NUS-WIDE lists in the official layout with all 81 concepts and 1,000 tags, ``num_images``
    images, 3 dead URLs, 1 "null" URL and 1 training image with no tag at all (and, with
    ``untagged_test``, 1 test image with no tag)."""
    rng = random.Random(seed)
    lists, images = root / "lists", root / "flickr"
    shared = [c for c in NUS_CONCEPTS if c not in NUS_CONCEPTS_NOT_TAGS]
    tag_list = [f"flickrtag{i:03d}" for i in range(925)] + shared
    rng.shuffle(tag_list)  # concepts sit anywhere among the 1,000 tags, as in TagList1k.txt
    seen = [t for t in tag_list if t not in NUS_CONCEPTS]
    _write(lists / "Concepts81.txt", "\n".join(NUS_CONCEPTS) + "\n", crlf=True)
    _write(lists / "NUS_WID_Tags" / "TagList1k.txt", "\n".join(tag_list) + "\n", crlf=True)

    keys = [f"{NUS_FOLDERS[i % 3]}/{i:04d}_{2124494179 + 7919 * i}.jpg" for i in range(num_images)]
    tags: dict[str, list[str]] = {}
    tag_rows, label_cols = [], {c: [] for c in NUS_CONCEPTS}
    untagged = {keys[5], keys[6]} if untagged_test else {keys[5]}  # keys[6] is a test image (6 % 3 == 0)
    for number, key in enumerate(keys):
        row = [0] * len(tag_list)
        concepts: set[str] = set()
        if key not in untagged:
            for column in rng.sample(range(len(tag_list)), 4):
                row[column] = 1  # may hit a shared concept column: a Flickr tag, not a label
            concepts = set(rng.sample(NUS_CONCEPTS, 2))
            if number == 0:
                row = [0] * len(tag_list)
                row[tag_list.index("sky")] = 1  # "sky" as a Flickr tag but not as a human label
                row[tag_list.index(seen[0])] = 1
                concepts = {"beach"}
        tag_rows.append(row)
        for concept in NUS_CONCEPTS:
            label_cols[concept].append(1 if concept in concepts else 0)
        tags[key] = [tag_list[c] for c, v in enumerate(row) if v and tag_list[c] not in NUS_CONCEPTS] + \
            [c for c in NUS_CONCEPTS if c in concepts]
    # AllTags1k.txt: tab-separated values with a trailing tab on each row (LESA strips 2 chars).
    _write(lists / "NUS_WID_Tags" / "AllTags1k.txt",
           "".join("\t".join(map(str, row)) + "\t\n" for row in tag_rows), crlf=True)
    for concept, values in label_cols.items():
        _write(lists / "AllLabels" / f"Labels_{concept}.txt", "".join(f"{v}\n" for v in values), crlf=True)
    windows = [key.replace("/", "\\") for key in keys]
    _write(lists / "ImageList" / "Imagelist.txt", "".join(f"C:\\ImageData\\Flickr\\{w}\n" for w in windows), crlf=True)
    splits = {key: ("train" if i % 3 else "test") for i, key in enumerate(keys)}
    _write(lists / "ImageList" / "TrainImagelist.txt",
           "".join(f"{w}\n" for w, k in zip(windows, keys, strict=True) if splits[k] == "train"), crlf=True)
    _write(lists / "ImageList" / "TestImagelist.txt",
           "".join(f"{w}\n" for w, k in zip(windows, keys, strict=True) if splits[k] == "test"), crlf=True)

    dead = {keys[3], keys[10], keys[17]}
    null_url = {keys[22]}
    lines = ["     Photo_file                                       Photo_id     url_Large    url_Middle    url_Small   url_Original"]
    for i, (key, w) in enumerate(zip(keys, windows, strict=True)):
        photo_id = key.split("_")[-1].split(".")[0]
        if key in null_url:
            urls = ["null"] * 4
        else:
            middle = f"{image_base_url}/flickr/{key}"
            urls = [f"{image_base_url}/flickr-large/{key}", middle, f"{image_base_url}/flickr-small/{key}", "null"]
        lines.append(f"C:\\ImageData\\Flickr\\{w}      {photo_id}     " + "     ".join(urls))
        if key not in dead:
            _write(images / key, tiny_jpeg(seed * 1000 + i))
    _write(lists / "NUS-WIDE-urls.txt", "\n".join(lines) + "\n", crlf=True)
    return NusReplica(lists_dir=lists, images_dir=images, keys=keys, tags=tags, splits=splits, dead=dead,
                      null_url=null_url, untagged=untagged, seen=seen, tag_list=tag_list)


# --------------------------------------------------------------------------- COCO

COCO_CATEGORY_TABLE = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"),
    (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
)


@dataclass
class CocoReplica:
    root: Path  # served: annotations_trainval2014.zip, train2014.zip, val2014.zip, train2014/, val2014/
    labels: dict[str, set[str]]  # file stem -> category names of its annotations
    subset: dict[str, str]  # file stem -> train2014 / val2014
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # subset -> its instances JSON


def write_coco_replica(root: Path, image_base_url: str, num_train: int = 24, num_val: int = 16, seed: int = 1) -> CocoReplica:
    """COCO 2014 instances files (real field names, the real 80 categories) zipped as the
    official annotations archive, plus images served per file and as train/val zips."""
    rng = random.Random(seed)
    names = {name: cid for cid, name, _ in COCO_CATEGORY_TABLE}
    seen_pick = ["person", "car", "dog", "bench", "pizza", "book"]
    unseen_pick = ["cat", "dog", "umbrella", "cup", "sink"]
    unused_pick = ["traffic light", "hot dog", "teddy bear"]
    labels: dict[str, set[str]] = {}
    subset_of: dict[str, str] = {}
    documents = {}
    annotation_id = 1
    for subset, count, offset in (("train2014", num_train, 100), ("val2014", num_val, 500000)):
        images, annotations = [], []
        for i in range(count):
            image_id = offset + 7 * i + 9
            file_name = f"COCO_{subset}_{image_id:012d}.jpg"
            # 0 seen only, 1 seen+unseen, 2 unseen only, 3 unused only, 4 none, 5 seen+unused,
            # 6 seen+unseen+unused: every case of the split rules
            pattern = i % 7
            chosen: set[str] = set()
            if pattern in (0, 1, 5, 6):
                chosen.add(rng.choice([s for s in seen_pick if s != "dog"]))
            if pattern in (1, 2, 6):
                chosen.add(rng.choice(unseen_pick))
            if pattern in (3, 5, 6):
                chosen.add(rng.choice(unused_pick))
            images.append({"license": 3, "file_name": file_name, "coco_url": f"{image_base_url}/{subset}/{file_name}",
                           "height": 12, "width": 12, "date_captured": "2013-11-14 16:28:13",
                           "flickr_url": f"http://farm4.staticflickr.com/{image_id}.jpg", "id": image_id})
            for j, name in enumerate(sorted(chosen)):
                annotations.append({"segmentation": [[1.0, 1.0, 10.0, 1.0, 10.0, 10.0]], "area": 40.5,
                                    "iscrowd": 1 if j and pattern == 1 else 0, "image_id": image_id,
                                    "bbox": [1.0, 1.0, 9.0, 9.0], "category_id": names[name], "id": annotation_id})
                annotation_id += 1
            stem = Path(file_name).stem
            labels[stem], subset_of[stem] = chosen, subset
            _write(root / subset / file_name, tiny_jpeg(seed * 10000 + image_id))
        documents[subset] = {
            "info": {"description": "COCO 2014 Dataset", "url": "http://cocodataset.org", "version": "1.0",
                     "year": 2014, "contributor": "COCO Consortium", "date_created": "2017/09/01"},
            "images": images,
            "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 3,
                          "name": "Attribution-NonCommercial-ShareAlike License"}],
            "annotations": annotations,
            "categories": [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in COCO_CATEGORY_TABLE],
        }
    with zipfile.ZipFile(root / "annotations_trainval2014.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for subset, document in documents.items():
            zf.writestr(f"annotations/instances_{subset}.json", json.dumps(document))
        zf.writestr("annotations/captions_train2014.json", json.dumps({"annotations": []}))
    for subset in ("train2014", "val2014"):
        with zipfile.ZipFile(root / f"{subset}.zip", "w") as zf:
            for file in sorted((root / subset).iterdir()):
                zf.write(file, f"{subset}/{file.name}")
    return CocoReplica(root=root, labels=labels, subset=subset_of, documents=documents)


@dataclass
class CocoSplitLists:
    folder: Path  # zs_split/ with train_17_48.json, val_17_48.json, val_unseen.json
    train: dict[str, set[str]]  # file stem -> the labels its list gives it
    gzsl: dict[str, set[str]]
    zsl: dict[str, set[str]]


def write_coco_split_lists(replica: CocoReplica, folder: Path) -> CocoSplitLists:
    """Stand-ins for SDL's ``zs_split/`` lists, in the COCO instances format ``train.py`` reads
    with pycocotools (the real ones are not published with it): train_17_48 = train2014 images
    with a seen and no unseen object (their seen annotations only); val_17_48 (GZSL) = val2014
    images with a seen or unseen object, annotations of the 65 classes only; val_unseen (ZSL) =
    val2014 images with an unseen object, its unseen annotations only. Two val images with a
    seen object are left out of every list, and one listed image has no annotation (so it is
    not listed, as for pycocotools' ``imgToAnns``)."""
    names = {cid: name for cid, name, _ in COCO_CATEGORY_TABLE}
    seen = {"person", "car", "bench", "pizza", "book"}
    unseen = {"cat", "dog", "umbrella", "cup", "sink"}

    def subset_list(subset: str, keep_image: Any, keep_class: set[str]) -> tuple[dict[str, Any], dict[str, set[str]]]:
        document = replica.documents[subset]
        stems = {im["id"]: Path(im["file_name"]).stem for im in document["images"]}
        chosen = {i for i, stem in stems.items() if keep_image(replica.labels[stem])}
        annotations = [a for a in document["annotations"] if a["image_id"] in chosen and names[a["category_id"]] in keep_class]
        labels: dict[str, set[str]] = {}
        for a in annotations:
            labels.setdefault(stems[a["image_id"]], set()).add(names[a["category_id"]])
        listed = [im for im in document["images"] if im["id"] in chosen]
        listed.append({**document["images"][-1], "id": 999999999, "file_name": "COCO_val2014_000999999999.jpg"})
        return {**document, "images": listed, "annotations": annotations}, labels

    folder.mkdir(parents=True, exist_ok=True)
    val_seen = sorted(s for s, n in replica.labels.items() if replica.subset[s] == "val2014" and n & seen and not n & unseen)
    left_out = set(val_seen[:2])
    lists = {
        "train_17_48.json": subset_list("train2014", lambda n: bool(n & seen) and not n & unseen, seen),
        "val_17_48.json": subset_list("val2014", lambda n: bool(n & (seen | unseen)), seen | unseen),
        "val_unseen.json": subset_list("val2014", lambda n: bool(n & unseen), unseen),
    }
    document, labels = lists["val_17_48.json"]
    stems = {im["id"]: Path(im["file_name"]).stem for im in document["images"]}
    document["images"] = [im for im in document["images"] if stems[im["id"]] not in left_out]
    document["annotations"] = [a for a in document["annotations"] if stems[a["image_id"]] not in left_out]
    lists["val_17_48.json"] = (document, {s: n for s, n in labels.items() if s not in left_out})
    for name, (document, _) in lists.items():
        (folder / name).write_text(json.dumps(document), encoding="utf-8")
    return CocoSplitLists(folder=folder, train=lists["train_17_48.json"][1], gzsl=lists["val_17_48.json"][1],
                          zsl=lists["val_unseen.json"][1])


# --------------------------------------------------------------------------- Open Images


@dataclass
class OpenImagesReplica:
    root: Path  # base of the CSVs (serve it or read it)
    seen: list[str]
    unseen: list[str]  # the chosen (top) unseen MIDs, in top_unseen order
    names: dict[str, str]
    positives: dict[str, set[str]]  # ImageID -> positive MIDs (Confidence 1, any vocabulary)
    negatives: dict[str, set[str]]  # ImageID -> Confidence-0 MIDs
    subset: dict[str, str]  # ImageID -> subset
    images: dict[str, bytes] = field(default_factory=dict)  # S3 key -> bytes


def _mid(i: int) -> str:
    return "/m/0" + "".join("0123456789bcdfghjklmnpqrstvwxz"[(i // 30**k) % 30] for k in range(4))


def write_open_images_replica(root: Path, num_seen: int = 40, num_candidates: int = 30, num_unseen: int = 8,
                              per_subset: int = 10, seed: int = 2) -> OpenImagesReplica:
    """Open Images v4 lists with reduced but consistent sizes: class-descriptions.csv (no
    header, CRLF, quoted names with commas, two MIDs sharing a name), classes-trainable.txt,
    the human image-label CSVs with Confidence-0 negatives, unseen_labels.pkl (a pickled numpy
    object array, as LESA/BiAM ship it) and top_400_unseen.csv (BOM + CRLF)."""
    rng = random.Random(seed)
    seen = [_mid(i) for i in range(num_seen)]
    candidates = [_mid(1000 + i) for i in range(num_candidates)]
    extra = [_mid(5000 + i) for i in range(5)]  # described classes outside the vocabulary
    names = {m: f"Seen class {i}" for i, m in enumerate(seen)}
    names[seen[1]] = "Ducks, geese and swans"
    names[seen[2]] = "Crane"
    names[seen[3]] = "Crane"  # shared display name, as in the real file
    names.update({m: f"Unseen class {i}" for i, m in enumerate(candidates)})
    names.update({m: f"Other {i}" for i, m in enumerate(extra)})
    rows = [f'{m},"{n}"' if "," in n else f"{m},{n}" for m, n in names.items()]
    _write(root / "class-descriptions.csv", "\n".join(rows) + "\n", crlf=True)
    _write(root / "classes-trainable.txt", "\n".join(seen) + "\n")
    top = rng.sample(range(num_candidates), num_unseen)
    _write(root / "top_400_unseen.csv", "\ufeff" + "\n".join(map(str, top)) + "\n", crlf=True)
    (root / "unseen_labels.pkl").write_bytes(pickle.dumps(np.array(candidates, dtype=object), protocol=2))
    unseen = [candidates[i] for i in top]
    not_top = [m for m in candidates if m not in unseen]

    positives: dict[str, set[str]] = {}
    negatives: dict[str, set[str]] = {}
    subset_of: dict[str, str] = {}
    images: dict[str, bytes] = {}
    for s_index, subset in enumerate(("train", "validation", "test")):
        lines = ["ImageID,Source,LabelName,Confidence"]
        for i in range(per_subset):
            image_id = f"{s_index:x}{i:03x}{rng.getrandbits(48):012x}"
            pos = set(rng.sample(seen, 2))
            if subset != "train":
                pos |= set(rng.sample(unseen, 1))
            if i == 0:
                pos = {seen[2], seen[3]}  # both "Crane" MIDs
            elif i == 1:
                pos = {seen[1]}  # the quoted name with commas
            neg = set(rng.sample([m for m in seen + unseen if m not in pos], 2))
            other = {rng.choice(extra), rng.choice(not_top)}  # positives outside the vocabulary
            if i == per_subset - 1:
                pos = set()  # only negatives and unknown labels: no tag at all
            for mid in sorted(pos | other):
                lines.append(f"{image_id},verification,{mid},1")
            for mid in sorted(neg):
                lines.append(f"{image_id},verification,{mid},0")
            positives[image_id], negatives[image_id], subset_of[image_id] = pos, neg, subset
            images[f"{subset}/{image_id}.jpg"] = tiny_jpeg(seed * 100000 + s_index * 1000 + i)
        _write(root / subset / f"{subset}-annotations-human-imagelabels.csv", "\n".join(lines) + "\n", crlf=True)
    return OpenImagesReplica(root=root, seen=seen, unseen=unseen, names=names, positives=positives,
                             negatives=negatives, subset=subset_of, images=images)


FAST_RETRY = {"backoff": 0.01, "timeout": 5}


def random_bytes(size: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
