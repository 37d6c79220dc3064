"""Tag scores from per-image matrices: the ranking rule of SDL (paper, section 4.1).

For an image with matrix A (M x d) and a tag with word vector t (d), the score is
``r = max_m (A t)_m``: the best of the M principal directions (eq. 1 uses the same max for
the positive and the negative tag). The paper's "M rows" baseline replaces the max by the
l2 norm over rows, ``r = ||A t||_2`` (section 4.1, "Baseline", after [52]).

Scoring takes any tag-vector matrix, so tags never seen in training are ranked without
retraining: they only need a word vector.
"""

from __future__ import annotations

from typing import Literal

import torch

Reduction = Literal["max", "l2"]
REDUCTIONS: tuple[str, ...] = ("max", "l2")


def row_scores(matrices: torch.Tensor, tag_vectors: torch.Tensor) -> torch.Tensor:
    """Per-row projections ``A_b t_c`` for every image and tag: (B, M, d) x (C, d) -> (B, M, C)."""
    if matrices.dim() != 3:
        raise ValueError(f"matrices must be (B, M, d), got shape {tuple(matrices.shape)}")
    if tag_vectors.dim() != 2 or tag_vectors.shape[1] != matrices.shape[2]:
        raise ValueError(
            f"tag_vectors must be (C, {matrices.shape[2]}), got shape {tuple(tag_vectors.shape)}"
        )
    return torch.matmul(matrices, tag_vectors.to(matrices.dtype).t())


def score_tags(
    matrices: torch.Tensor, tag_vectors: torch.Tensor, reduction: Reduction = "max"
) -> torch.Tensor:
    """Scores (B, C) of C tags for B images: max over rows (SDL) or l2 norm over rows (baseline)."""
    projections = row_scores(matrices, tag_vectors)
    if reduction == "max":
        # max(...).values, not amax: its backward sends the gradient to the one dominant row,
        # as eq. 1 intends and the released code does (amax splits it among tied rows), and
        # it is the cheaper backward.
        return projections.max(dim=1).values
    if reduction == "l2":
        return torch.linalg.vector_norm(projections, ord=2, dim=1)
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
