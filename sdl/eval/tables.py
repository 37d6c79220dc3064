"""Evaluation reports built on :mod:`sdl.eval.metrics`: the metrics dict and per-tag / per-K tables.

``image_sets`` (optional, as in :func:`sdl.eval.metrics.evaluate`) gives a setting its own
test images: ``{"zsl": mask, "gzsl": mask}`` boolean masks over the rows of ``scores``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sdl.data.split import TagSplit
from sdl.eval.metrics import (
    average_precision_per_tag,
    evaluate,
    precision_recall_f1_at_ks,
)

ImageSets = Mapping[str, np.ndarray] | None


def setting_rows(image_sets: ImageSets, setting: str, n_images: int) -> np.ndarray | slice:
    """The rows of ``setting``'s test images (every row when it has no set of its own)."""
    if not image_sets or setting not in image_sets:
        return slice(0, n_images)
    return np.flatnonzero(np.asarray(image_sets[setting], dtype=bool))


def _settings(
    scores: np.ndarray, targets: np.ndarray, tags: TagSplit, image_sets: ImageSets = None
) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    unseen = slice(len(tags.seen), len(tags.all_tags))
    zsl, gzsl = (setting_rows(image_sets, s, len(scores)) for s in ("zsl", "gzsl"))
    return {
        "zsl": (scores[zsl][:, unseen], targets[zsl][:, unseen], tags.unseen),
        "gzsl": (scores[gzsl], targets[gzsl], tags.all_tags),
    }


def summarise(
    scores: np.ndarray, targets: np.ndarray, tags: TagSplit, ks: Sequence[int], protocol: str,
    image_sets: ImageSets = None,
) -> dict[str, Any]:
    """ZSL and GZSL metrics, chance levels and counts (columns: seen tags first, then unseen)."""
    seen = np.arange(len(tags.seen))
    unseen = np.arange(len(tags.seen), len(tags.all_tags))
    results = evaluate(scores, targets, seen, unseen, list(ks), protocol=protocol,  # type: ignore[arg-type]
                       image_sets=dict(image_sets) if image_sets else None)
    results["tags"] = {"seen": len(tags.seen), "unseen": len(tags.unseen)}
    results["ks"] = list(ks)
    return results


def evaluation_tables(
    scores: np.ndarray, targets: np.ndarray, tags: TagSplit, protocol: str, max_k: int = 20,
    image_sets: ImageSets = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-tag AP (tag, setting, unseen, ap) and the P/R/F1@K curve (setting, k, ...) for K = 1..max_k.
    (Under "open_images" a GZSL tag with no verified label shows AP 0 here and is left out of
    the GZSL mAP.)"""
    unseen = set(tags.unseen)
    per_tag, curve = [], []
    for setting, (s, t, names) in _settings(scores, targets, tags, image_sets).items():
        ap = average_precision_per_tag(s, t, protocol=protocol)  # type: ignore[arg-type]
        per_tag += [{"setting": setting, "tag": n, "unseen": n in unseen, "ap": float(a)} for n, a in zip(names, ap, strict=True)]
        at_ks = precision_recall_f1_at_ks(s, t, range(1, min(max_k, len(names)) + 1), protocol=protocol)  # type: ignore[arg-type]
        curve += [{"setting": setting, "k": k, "precision": p, "recall": r, "f1": f1} for k, (p, r, f1) in at_ks.items()]
    return pd.DataFrame(per_tag), pd.DataFrame(curve)


def with_extra_tags(
    scores: np.ndarray, targets: np.ndarray, tags: TagSplit, ks: Sequence[int], protocol: str,
    image_sets: ImageSets = None,
) -> dict[str, Any]:
    """P/R/F1@K when the vocabulary's extra tags (columns after the dataset's, no labelled
    image) compete in every image's top K: how much the grown vocabulary distracts the tagger.
    ``scores`` has the dataset's columns first, then the extra tags'."""
    num_dataset = len(tags.all_tags)
    num_extra = scores.shape[1] - num_dataset
    padded = np.concatenate([targets, np.zeros((len(targets), num_extra), targets.dtype)], axis=1)
    columns = {
        "zsl": np.r_[len(tags.seen) : scores.shape[1]],  # unseen + extra
        "gzsl": np.arange(scores.shape[1]),
    }
    result: dict[str, Any] = {"tags": int(scores.shape[1]), "extra_tags": int(num_extra)}
    for setting, cols in columns.items():
        result[setting] = {}
        rows = setting_rows(image_sets, setting, len(scores))
        fitting = [k for k in ks if k <= len(cols)]
        if not fitting:
            continue
        at_ks = precision_recall_f1_at_ks(scores[rows][:, cols], padded[rows][:, cols], fitting, protocol=protocol)  # type: ignore[arg-type]
        for k, (p, r, f1) in at_ks.items():
            result[setting].update({f"precision@{k}": p, f"recall@{k}": r, f"f1@{k}": f1})
    return result

