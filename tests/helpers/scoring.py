"""A slow, explicit scoring of tags (paper eq. 1: max over rows; the baseline's l2 norm), to
check the vectorised one against."""

from __future__ import annotations

import numpy as np


def slow_scores(matrices: np.ndarray, tags: np.ndarray, reduction: str) -> np.ndarray:
    batch, rows, _ = matrices.shape
    out = np.zeros((batch, len(tags)))
    for b in range(batch):
        for c, tag in enumerate(tags):
            projections = [float(sum(matrices[b, m, i] * tag[i] for i in range(len(tag)))) for m in range(rows)]
            out[b, c] = max(projections) if reduction == "max" else sum(p * p for p in projections) ** 0.5
    return out
