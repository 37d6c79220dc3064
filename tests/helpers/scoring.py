"""Slow, explicit references to check the vectorised code against: the scoring of tags (paper
eq. 1: max over rows; the baseline's l2 norm) and the Open Images mAP of LESA / BiAM."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score


def slow_scores(matrices: np.ndarray, tags: np.ndarray, reduction: str) -> np.ndarray:
    batch, rows, _ = matrices.shape
    out = np.zeros((batch, len(tags)))
    for b in range(batch):
        for c, tag in enumerate(tags):
            projections = [float(sum(matrices[b, m, i] * tag[i] for i in range(len(tag)))) for m in range(rows)]
            out[b, c] = max(projections) if reduction == "max" else sum(p * p for p in projections) ** 0.5
    return out


def ref_open_images_ap(
    scores: np.ndarray, targets: np.ndarray, drop_unverified: bool
) -> tuple[list[float], np.ndarray]:
    """The Open Images protocol written out, targets 1 (verified positive), -1 (verified
    negative), 0 (not verified): keep the images with a positive; per tag, sklearn's AP on the
    rows verified for that tag only (0 without a positive); tags without a verified row left
    out if asked. Returns the APs (percent) and the tags scored."""
    keep = (targets == 1).any(axis=1)
    s, t = scores[keep], targets[keep]
    aps, scored = [], []
    for c in range(s.shape[1]):
        verified = t[:, c] != 0
        if drop_unverified and not verified.any():
            continue
        y = t[verified, c] == 1
        aps.append(100 * average_precision_score(y, s[verified, c]) if y.any() else 0.0)
        scored.append(c)
    return aps, np.array(scored)


def ref_open_images_map(scores: np.ndarray, targets: np.ndarray, drop_unverified: bool) -> float:
    """The plain mean over tags of :func:`ref_open_images_ap`."""
    return float(np.mean(ref_open_images_ap(scores, targets, drop_unverified)[0]))
