"""The three paper datasets end to end: `dvc repro` of download -> validate -> split -> embed ->
train -> evaluate -> register for nus_wide, coco and open_images together, in a temp copy of
the repository, on local replicas of the official sources in their exact formats: an HTTP
server (the NUS-WIDE lists and Flickr URLs, the COCO annotation archive and images, the Open
Images CSVs and LESA's unseen-label files, a real fastText ``.bin.gz``), and a moto S3 bucket
readable without credentials (the Open Images images). The paper's params, shrunk to fit the
replicas (a tiny backbone, 32 px, one short epoch, K = 3)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdl.data.kinds.coco import COCO_SEEN, COCO_UNSEEN
from tests.helpers.paper import DATASETS, paper_params
from tests.helpers.replicas import (
    NUS_CONCEPTS,
    MotoS3,
    ReplicaHTTPServer,
    write_coco_replica,
    write_nus_wide_replica,
    write_open_images_replica,
)
from tests.helpers.repo import copy_repository, pipeline_env, run_dvc
from tests.helpers.wordvecs import train_fasttext_bin

pytestmark = pytest.mark.slow
STAGES = ("download", "validate", "split", "embed", "train", "evaluate", "register")
BUCKET = "open-images-replica"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3) -> Iterator[dict[str, Any]]:
    served = tmp_path_factory.mktemp("official")
    server = ReplicaHTTPServer(served)
    try:
        nus = write_nus_wide_replica(served / "nus", f"{server.base_url}/nus")
        coco = write_coco_replica(served / "coco", f"{server.base_url}/coco")
        oi = write_open_images_replica(served / "oi")
        moto_s3.create_bucket(BUCKET)
        moto_s3.client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}))
        for key, data in oi.images.items():
            moto_s3.put(BUCKET, key, data)
        # every word of every tag, so that each tag has a vector of its own
        names = [*nus.tag_list, *NUS_CONCEPTS, *COCO_SEEN, *COCO_UNSEEN, *oi.names.values()]
        words = [w for name in names for w in re.split(r"[\s,_]+", name) if w]
        vectors = train_fasttext_bin(tmp_path_factory.mktemp("fasttext"), words)
        (served / "vectors.bin.gz").write_bytes(gzip.compress(vectors.read_bytes()))
        yield {"server": server, "nus": nus, "coco": coco, "oi": oi, "s3": moto_s3}
    finally:
        server.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, repo_params: dict[str, Any], sources: dict[str, Any]) -> tuple[Path, str]:
    oi = sources["oi"]
    params = paper_params(repo_params, sources["server"].base_url, sources["s3"].endpoint_url, BUCKET, len(oi.seen),
                          len(oi.unseen))
    root = copy_repository(tmp_path_factory.mktemp("paper"), params)
    env = {**pipeline_env(root), **MotoS3.CREDENTIALS}
    env.pop("AWS_ACCESS_KEY_ID", None)  # the public bucket is read unsigned, without credentials
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    result = run_dvc(root, "repro", env=env)
    return root, result.stdout + result.stderr


def test_every_stage_of_every_paper_dataset_ran(built: tuple[Path, str]) -> None:
    _root, output = built
    missing = [f"{s}@{d}" for d in DATASETS for s in STAGES if f"Running stage '{s}@{d}'" not in output]
    assert not missing, output[-3000:]


def test_each_kind_counts_what_it_got(built: tuple[Path, str], sources: dict[str, Any]) -> None:
    root, _ = built
    report = {d: json.loads((root / f"metrics/{d}/download.json").read_text()) for d in DATASETS}
    nus = sources["nus"]
    # 30 listed; dead URLs, the "null" URL and the untagged image are not in the manifest
    expected_nus = len(nus.keys) - len(nus.dead) - len(nus.null_url) - len(nus.untagged)
    assert report["nus_wide"]["download"]["images"] == expected_nus == report["nus_wide"]["manifest"]["images"]
    assert report["nus_wide"]["manifest"]["tags"] == 925 + 81
    assert report["coco"]["manifest"]["tags"] == 48 + 17 and report["coco"]["download"]["missing"] == 0
    oi = sources["oi"]
    assert report["open_images"]["manifest"]["tags"] == len(oi.seen) + len(oi.unseen)
    assert report["open_images"]["download"]["failed"] == 0 and report["open_images"]["download"]["images"] > 0
    for dataset in DATASETS:
        split = json.loads((root / f"data/{dataset}/split/tags.json").read_text())
        assert all(split["images"][s] > 0 for s in ("train", "val", "test")), (dataset, split["images"])


def test_a_champion_is_registered_per_dataset(built: tuple[Path, str]) -> None:
    root, _ = built
    for dataset in DATASETS:
        registered = json.loads((root / f"metrics/{dataset}/registered.json").read_text())
        assert registered["name"] == f"sdl-{dataset}" and "champion" in registered["aliases"], registered
        evaluation = json.loads((root / f"metrics/{dataset}/eval.json").read_text())
        assert {"map", "f1@3"} <= set(evaluation["zsl"]) and evaluation["images"]["gzsl"] > 0


def test_a_second_repro_runs_nothing(built: tuple[Path, str]) -> None:
    root, _ = built
    output = run_dvc(root, "repro").stdout
    assert "Running stage" not in output and "Data and pipelines are up to date." in output
