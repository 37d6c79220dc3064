"""The paper datasets' params for tests on local replicas of their official sources."""

from __future__ import annotations

import copy
from typing import Any

DATASETS = ("nus_wide", "coco", "open_images")


def paper_params(repo_params: dict[str, Any], base: str, s3_endpoint: str, bucket: str, oi_seen: int, oi_unseen: int,
                 datasets: tuple[str, ...] = DATASETS) -> dict[str, Any]:
    """The repository's params for the paper datasets, pointed at replicas served from ``base``
    (``nus/``, ``coco/``, ``oi/``, ``vectors.bin.gz``) and an S3 replica, shrunk to fit them."""
    params = copy.deepcopy(repo_params)
    params["datasets"] = list(datasets)
    params["download"]["nus_wide"]["options"] = {
        "lists": f"{base}/nus/lists", "urls": "NUS-WIDE-urls.txt", "workers": 4, "retries": 1, "backoff": 0.01,
        "min_images_fraction": 0.5}
    params["download"]["coco"]["options"] = {
        "annotations": f"{base}/coco/annotations_trainval2014.zip", "workers": 4, "retries": 1, "backoff": 0.01}
    params["download"]["open_images"]["options"] = {
        "base_url": f"{base}/oi", "unseen_labels": "unseen_labels.pkl", "top_unseen": "top_400_unseen.csv",
        "bucket": bucket, "endpoint_url": s3_endpoint, "workers": 4, "retries": 1, "backoff": 0.01}
    for dataset in DATASETS:
        params["download"][dataset]["cache_short_side"] = 32
        params["download"][dataset]["cache_workers"] = 2
        params["validate"][dataset].update({"min_images_per_tag": 0, "max_tag_prevalence": 1.0, "decode_sample": 0})
        params["split"][dataset]["images"].update({"val_fraction": 0.25})
        params["embed"][dataset] = {"source": {"kind": "fasttext", "path": "data/wordvecs/tiny.bin",
                                               "url": f"{base}/vectors.bin.gz"}}
        params["train"][dataset].update({
            "backbone": "test_efficientnet", "pretrained": False, "image_size": 32, "num_rows": 2, "epochs": 1,
            "batch_size": 4, "max_steps_per_epoch": 2, "num_workers": 0, "device": "cpu", "amp": False,
            "eval_batch_size": 16, "best_metric": "gzsl.f1@3", "checkpoint_every_steps": 0})
        params["evaluate"][dataset].update({"ks": [3], "num_workers": 0, "device": "cpu", "batch_size": 16})
        params["register"][dataset]["lock_wait_seconds"] = 60
    params["validate"]["open_images"].update({"expected_seen": oi_seen, "expected_unseen": oi_unseen})
    return params
