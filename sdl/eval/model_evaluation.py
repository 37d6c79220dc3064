"""Evaluating a trained model on the test split: what the ``evaluate`` stage computes.

Every served tag is scored (the dataset's first, then the vocabulary's extra tags); ZSL and
GZSL metrics use the dataset's tags, and the extra tags compete in every image's top K as
distractors (``results["vocabulary"]``). The per-tag AP and P/R/F1@K tables, the chance levels
and the grid of test images are returned for the report and plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sdl.config.params import EvaluateParams
from sdl.data.dataset import TaggedImageDataset
from sdl.eval.inference import compute_scores
from sdl.eval.plots import GridItem, grid_items
from sdl.eval.reports import chance_levels
from sdl.eval.tables import evaluation_tables, summarise, with_extra_tags
from sdl.eval.test_set import TestSet
from sdl.models import load_model


@dataclass
class Evaluation:
    """A model's results on the test split, with the tables and grid for its report."""

    results: dict[str, Any]
    per_tag: pd.DataFrame
    curves: pd.DataFrame
    chance: dict[str, dict[str, float]]
    grid: list[GridItem]


def evaluate_model(model_dir: str | Path, test: TestSet, params: EvaluateParams, progress: bool = False) -> Evaluation:
    """Score the test images with the model in ``model_dir`` and compute every metric (each
    setting on its own test images where the split gives it some)."""
    check_protocol_data(params.protocol, test)
    model = load_model(model_dir)
    config = model.config
    dataset = TaggedImageDataset(test.paths, None, config.image_size, config.mean, config.std)
    all_scores = compute_scores(
        model, dataset, test.vectors, batch_size=params.batch_size, num_workers=params.num_workers,
        device=params.device, progress=progress, description="test images",
    )
    tags, sets, protocol = test.tags, test.image_sets, params.protocol
    scores = all_scores[:, : len(tags.all_tags)]
    results = summarise(scores, test.targets, tags, params.ks, protocol, sets)
    results["vocabulary"] = with_extra_tags(all_scores, test.targets, tags, params.ks, protocol, sets)
    per_tag, curves = evaluation_tables(scores, test.targets, tags, protocol, image_sets=sets)
    top_k = min(max(params.ks), len(tags.all_tags))
    return Evaluation(
        results=results, per_tag=per_tag, curves=curves,
        chance=chance_levels(test.targets, tags, params.ks, protocol, sets),
        grid=grid_items(test.paths, test.tag_lists, scores, tags, params.grid_images, top_k),
    )


def check_protocol_data(protocol: str, test: TestSet) -> None:
    """The Open Images protocol ranks each tag among its verified images: without verified
    negatives in the manifest every label would be a positive and every AP 100."""
    if protocol == "open_images" and not test.has_negatives:
        raise ValueError(
            "evaluate protocol 'open_images' needs verified negatives in the manifest (a 'negatives' "
            "column, written by the open_images kind): rerun the download stage, or use protocol 'sdl' or 'all'"
        )
