"""Property-based tests (hypothesis) of the loss and the metrics.

- the SDL loss (every variant, reduction and lambda) is finite and >= 0, with finite
  gradients, for any batch: images without a positive, with only positives, unknown (-1)
  labels, large scores;
- AP and P/R/F1@K lie in [0, 100]; the metrics do not change when the images are permuted;
  a perfect ranking gives 100.

AP is invariant to permuting images only without tied scores within a tag (ties keep image
order, by design: see sdl/eval/metrics.py), so the AP property draws distinct scores; P/R/F1@K
(ties keep tag order) is checked with ties too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sdl.eval.metrics import (
    average_precision_per_tag,
    evaluate,
    mean_average_precision,
    precision_recall_f1_at_k,
)
from sdl.losses import create_loss

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROTOCOLS = st.sampled_from(["sdl", "all"])


# --------------------------------------------------------------------------- loss


@st.composite
def loss_batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, rows, dim, tags = (draw(st.integers(1, n)) for n in (5, 4, 6, 7))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))  # 30: scores in the hundreds (exp overflows float32)
    values = st.floats(-1.0, 1.0, allow_nan=False, width=32)
    matrices = draw(hnp.arrays(np.float32, (batch, rows, dim), elements=values)) * scale
    vectors = draw(hnp.arrays(np.float32, (tags, dim), elements=values))
    targets = draw(hnp.arrays(np.int8, (batch, tags), elements=st.sampled_from([-1, 0, 1])))
    return torch.from_numpy(matrices), torch.from_numpy(vectors), torch.from_numpy(targets.astype(np.float32))


@SETTINGS
@given(
    data=loss_batches(),
    reg_lambda=st.sampled_from([0.0, 0.01, 0.3, 1.0]),
    variant=st.sampled_from(["paper", "official"]),
    reduction=st.sampled_from(["max", "l2"]),
)
def test_sdl_loss_is_finite_and_non_negative(data, reg_lambda, variant, reduction) -> None:
    matrices, vectors, targets = data
    matrices.requires_grad_(True)
    loss = create_loss("sdl", reg_lambda=reg_lambda, variant=variant, reduction=reduction)(matrices, vectors, targets)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() >= 0.0
    loss.backward()
    assert torch.isfinite(matrices.grad).all()


@SETTINGS
@given(data=loss_batches())
def test_sdl_loss_does_not_depend_on_image_order(data) -> None:
    matrices, vectors, targets = data
    order = torch.randperm(matrices.shape[0], generator=torch.Generator().manual_seed(0))
    loss = create_loss("sdl", reg_lambda=0.3)
    assert loss(matrices[order], vectors, targets[order]).item() == pytest.approx(
        loss(matrices, vectors, targets).item(), rel=1e-5, abs=1e-6
    )


# --------------------------------------------------------------------------- metrics


@st.composite
def score_cases(draw: st.DrawFn, distinct: bool) -> tuple[np.ndarray, np.ndarray]:
    images, tags = draw(st.integers(1, 30)), draw(st.integers(1, 8))
    targets = draw(hnp.arrays(np.int8, (images, tags), elements=st.sampled_from([-1, 0, 1, 1])))
    if distinct:
        # distinct scores: a permutation of evenly spaced values (no ties anywhere)
        seed = draw(st.integers(0, 2**32 - 1))
        scores = np.random.default_rng(seed).permutation(images * tags).reshape(images, tags).astype(np.float64)
    else:
        scores = draw(hnp.arrays(np.float64, (images, tags), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0])))
    return scores, targets


def _permutation(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


@SETTINGS
@given(case=score_cases(distinct=False), protocol=PROTOCOLS, k=st.integers(1, 8))
def test_metrics_lie_between_0_and_100(case, protocol, k) -> None:
    scores, targets = case
    assume(k <= scores.shape[1])
    ap = average_precision_per_tag(scores, targets, protocol)
    assert ap.shape == (scores.shape[1],) and np.all((ap >= 0.0) & (ap <= 100.0))
    assert 0.0 <= mean_average_precision(scores, targets, protocol) <= 100.0
    assert all(0.0 <= value <= 100.0 for value in precision_recall_f1_at_k(scores, targets, k, protocol))


@SETTINGS
@given(case=score_cases(distinct=True), protocol=PROTOCOLS, seed=st.integers(0, 1000))
def test_ap_is_invariant_to_permuting_images(case, protocol, seed) -> None:
    scores, targets = case
    rows = _permutation(len(scores), seed)
    np.testing.assert_allclose(
        average_precision_per_tag(scores[rows], targets[rows], protocol),
        average_precision_per_tag(scores, targets, protocol), atol=1e-9,
    )


@SETTINGS
@given(case=score_cases(distinct=False), protocol=PROTOCOLS, k=st.integers(1, 8), seed=st.integers(0, 1000))
def test_top_k_metrics_are_invariant_to_permuting_images_even_with_ties(case, protocol, k, seed) -> None:
    scores, targets = case
    assume(k <= scores.shape[1])
    rows = _permutation(len(scores), seed)
    assert precision_recall_f1_at_k(scores[rows], targets[rows], k, protocol) == pytest.approx(
        precision_recall_f1_at_k(scores, targets, k, protocol)
    )


@SETTINGS
@given(case=score_cases(distinct=True), seed=st.integers(0, 1000))
def test_evaluate_is_invariant_to_permuting_images(case, seed) -> None:
    scores, targets = case
    assume(scores.shape[1] >= 2)
    unseen = np.arange(scores.shape[1] // 2, scores.shape[1])
    seen = np.arange(scores.shape[1] // 2)
    rows = _permutation(len(scores), seed)
    before = evaluate(scores, targets, seen, unseen, [1])
    after = evaluate(scores[rows], targets[rows], seen, unseen, [1])
    for setting in ("zsl", "gzsl"):
        assert after[setting] == pytest.approx(before[setting])
    assert after["images"] == before["images"] and after["chance"] == pytest.approx(before["chance"])


@SETTINGS
@given(case=score_cases(distinct=True), protocol=PROTOCOLS)
def test_a_perfect_ranking_gives_100(case, protocol) -> None:
    _, targets = case
    targets = targets.copy()
    targets[0, :] = 1  # every tag has a positive image
    noise = np.random.default_rng(0).random(targets.shape)
    scores = (targets == 1) * 2.0 + noise  # every positive above every non-positive, per tag and per image
    assert mean_average_precision(scores, targets, protocol) == pytest.approx(100.0)
    np.testing.assert_allclose(average_precision_per_tag(scores, targets, protocol), 100.0)
    assert precision_recall_f1_at_k(scores, targets, targets.shape[1], protocol)[1] == pytest.approx(100.0)
    single = np.zeros_like(targets)
    single[np.arange(len(targets)), np.arange(len(targets)) % targets.shape[1]] = 1  # one positive per image
    scores = single * 2.0 + noise
    assert precision_recall_f1_at_k(scores, single, 1, protocol) == pytest.approx((100.0, 100.0, 100.0))
    assert precision_recall_f1_at_k(scores, single, 1, protocol)[0] == pytest.approx(100.0)
