"""COCO with the released split lists through the stages (download -> ... -> register): ZSL is
scored on val_unseen's images and GZSL on val_17_48's, in eval.json and in the gate."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sdl.data.kinds.coco import COCO_SEEN, COCO_UNSEEN
from tests.helpers.replicas import ReplicaHTTPServer, write_coco_replica, write_coco_split_lists
from tests.helpers.stages import make_workdir, option, run_stage, stage_argv


def coco_params(tiny: dict[str, Any], server: ReplicaHTTPServer) -> dict[str, Any]:
    """The tiny embedded params plus a ``coco`` dataset read from the replica, embedded with
    the offline GloVe vectors and trained like the tiny embedded model."""
    params = copy.deepcopy(tiny)
    params["datasets"] = ["embedded", "coco"]
    params["download"]["coco"] = {"kind": "coco", "cache_short_side": 0, "options": {
        "annotations": server.url("annotations_trainval2014.zip"), "split_lists": server.url("zs_split"),
        "workers": 2, "retries": 1, "backoff": 0.01, "timeout": 10.0}}
    params["validate"]["coco"] = {"min_tags_per_image": 1, "max_tags_per_image": 65, "min_images_per_tag": 0,
                                  "max_tag_prevalence": 1.0, "decode_sample": 0, "expected_seen": 48,
                                  "expected_unseen": 17}
    params["split"]["coco"] = {"tags": {"method": "predefined"},
                               "images": {"val_fraction": 0.2, "test_fraction": 0.0, "seed": 0, "train_seen_only": True}}
    params["embed"]["coco"] = copy.deepcopy(params["embed"]["embedded"])
    params["train"]["coco"] = copy.deepcopy(params["train"]["embedded"])
    params["evaluate"]["coco"] = {**params["evaluate"]["embedded"], "ks": [3], "grid_images": 0}
    params["register"]["coco"] = copy.deepcopy(params["register"]["embedded"])
    return params


@pytest.mark.usefixtures("one_torch_thread")
def test_each_setting_is_scored_on_its_own_list(tmp_path: Path, http_root: Path, http_replica: ReplicaHTTPServer,
                                                 tiny_params: dict[str, Any]) -> None:
    replica = write_coco_replica(http_root, http_replica.base_url)
    lists = write_coco_split_lists(replica, http_root / "zs_split")
    root = make_workdir(tmp_path / "work", coco_params(tiny_params, http_replica))
    for stage in ("download", "validate", "split", "embed", "train", "evaluate", "register"):
        assert run_stage(stage, root, dataset="coco") == 0, stage

    _, argv = stage_argv("split", "coco")
    counts = json.loads((root / option(argv, "out") / "tags.json").read_text())["images"]
    assert (counts["test_zsl"], counts["test_gzsl"]) == (len(lists.zsl), len(lists.gzsl))
    assert counts["test"] == len(set(lists.zsl) | set(lists.gzsl))

    _, argv = stage_argv("evaluate", "coco")
    result = json.loads((root / option(argv, "metrics")).read_text())
    # every val_unseen image shows an unseen class, every val_17_48 image one of the 65: the
    # "sdl" protocol keeps them all, each setting on its own list
    assert result["images"] == {"zsl": len(lists.zsl), "gzsl": len(lists.gzsl)}
    unseen, vocabulary = set(COCO_UNSEEN), set(COCO_SEEN) | set(COCO_UNSEEN)
    labels = {stem: lists.gzsl.get(stem, set()) | lists.zsl.get(stem, set()) for stem in set(lists.gzsl) | set(lists.zsl)}
    zsl_density = sum(len(labels[s] & unseen) for s in lists.zsl) / len(lists.zsl)
    gzsl_density = sum(len(labels[s] & vocabulary) for s in lists.gzsl) / len(lists.gzsl)
    assert result["labels_per_image"] == {"zsl": pytest.approx(zsl_density), "gzsl": pytest.approx(gzsl_density)}

    _, argv = stage_argv("register", "coco")
    gate = json.loads((root / option(argv, "out")).read_text())["gate"]
    assert gate["promoted"] and gate["images"] == counts["test"]
    assert gate["challenger_metrics"]["images"] == result["images"]  # the gate scores the same sets
