"""Evaluating a model on a test split with verified negatives and per-setting image sets
(sdl.eval.model_evaluation), checked against the Open Images protocol written out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from PIL import Image

from sdl.config.params import EvaluateParams
from sdl.data.dataset import TaggedImageDataset
from sdl.data.manifest import write_manifest
from sdl.data.split import TagSplit, write_split
from sdl.eval.inference import compute_scores
from sdl.eval.model_evaluation import evaluate_model
from sdl.eval.test_set import read_test_set
from sdl.models import create_model, load_model, save_model
from sdl.safety.atomic import write_parquet
from tests.helpers.images import SEEN, UNSEEN, make_tagged_images
from tests.helpers.scoring import ref_open_images_map

TAGS = TagSplit(seen=SEEN, unseen=UNSEEN)


@pytest.fixture
def split_dir(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    return _write_split(tmp_path)


def _write_split(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    paths, tags = make_tagged_images(tmp_path / "images", 40, SEEN + UNSEEN, seed=4)
    for i, path in enumerate(paths):  # no two images alike: tie-free scores (sklearn groups ties, we do not)
        pixels = np.asarray(Image.open(path)).copy()
        pixels[31, :3] = (5 * i, 255 - 5 * i, 3 * i)
        Image.fromarray(pixels).save(path)
    rng = np.random.default_rng(4)
    # verified negatives: about half the tags an image does not show; a few images without a tag
    negatives = [sorted(t for t in TAGS.all_tags if t not in shown and rng.random() < 0.5) for shown in tags]
    tags = [[] if i % 9 == 0 else t for i, t in enumerate(tags)]
    ids = [f"img{i:02d}" for i in range(40)]
    write_manifest(tmp_path / "manifest.parquet", pd.DataFrame({
        "image_id": ids, "path": [str(p) for p in paths], "tags": tags, "negatives": negatives,
        "official_split": ["test"] * 40}))
    write_split(tmp_path / "split", TAGS, pd.DataFrame({
        "image_id": ids, "subset": ["test"] * 40, "zsl": [i % 3 != 0 for i in range(40)], "gzsl": [True] * 40}))
    vectors = np.random.default_rng(5).normal(size=(len(TAGS.all_tags), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_parquet(tmp_path / "vocabulary.parquet", pa.table({
        "tag": TAGS.all_tags, "vector": [list(map(float, v)) for v in vectors],
        "role": ["seen"] * len(SEEN) + ["unseen"] * len(UNSEEN), "unseen": [False] * len(SEEN) + [True] * len(UNSEEN)}))
    torch.manual_seed(0)
    save_model(create_model("test_efficientnet", 2, 16, False, image_size=32), tmp_path / "model")
    return tmp_path / "manifest.parquet", tmp_path / "split", tmp_path / "vocabulary.parquet", tmp_path / "model"


@pytest.mark.usefixtures("one_torch_thread")
def test_open_images_protocol_and_image_sets_end_to_end(split_dir: tuple[Path, Path, Path, Path]) -> None:
    manifest, split, vocabulary, model_dir = split_dir
    test = read_test_set(manifest, split, vocabulary, protocol="open_images")
    assert len(test.paths) == 40 - 5  # images 0, 9, 18, 27, 36 have no tag: not even scored
    evaluation = evaluate_model(model_dir, test, EvaluateParams(ks=[1, 2], protocol="open_images", grid_images=0,
                                                                 device="cpu"))
    results = evaluation.results
    model = load_model(model_dir)
    dataset = TaggedImageDataset(test.paths, None, 32, model.config.mean, model.config.std)
    scores = compute_scores(model, dataset, test.dataset_vectors, batch_size=16, device="cpu")
    zsl_rows = test.image_sets["zsl"]
    unseen = slice(len(SEEN), None)
    assert results["zsl"]["map"] == pytest.approx(
        ref_open_images_map(scores[zsl_rows][:, unseen], test.targets[zsl_rows][:, unseen], drop_unverified=False), abs=1e-4)
    assert results["gzsl"]["map"] == pytest.approx(ref_open_images_map(scores, test.targets, drop_unverified=True), abs=1e-4)
    zsl_kept = (test.targets[zsl_rows][:, unseen] == 1).any(axis=1).sum()
    assert results["images"] == {"zsl": int(zsl_kept), "gzsl": 35}
    assert results["protocol"] == "open_images" and results["tags"] == {"seen": 4, "unseen": 2}
