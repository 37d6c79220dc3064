"""SDL loss (paper eq. 1-5) against independent computations: a per-image loop, hand-worked numbers."""

from __future__ import annotations

import math
import types

import pytest
import torch

import sdl.losses.pairwise as pairwise_module
from sdl.losses import (
    fast0tag_loss,
    pairwise_softplus_sum,
    row_variance_regularizer,
    sdl_loss,
    semantic_diversity_weight,
)
from sdl.losses.pairwise import pair_blocks
from tests.helpers.gpu import needs_cuda

F64 = torch.float64
# What each variant name computes, written out here rather than taken from sdl.losses: the two
# forms and the aliases the issue keeps ("official" the released code, "paper" eq. 2 as printed).
FORM = {"per_positive": "per_positive", "official": "per_positive", "per_pair": "per_pair", "paper": "per_pair"}
FORMS = ["per_pair", "per_positive"]
NAMES = list(FORM)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def reference_loss(
    matrices: torch.Tensor,
    tag_vectors: torch.Tensor,
    targets: torch.Tensor,
    reg_lambda: float | None,
    variant: str,
    use_sdw: bool = True,
    reduction: str = "max",
) -> torch.Tensor:
    """Slow per-image loop written directly from eq. 1-5 (plus the released code's conventions):
    ``per_pair`` divides the pair sum by |P||N| (eq. 2), ``per_positive`` by |P|, compares the
    positives with 0 when there is no negative and doubles the image's term whenever a lambda
    is given (``None``: no regulariser, no factor 2)."""
    form = FORM[variant]
    lam = 0.0 if reg_lambda is None else reg_lambda
    batch, rows, _ = matrices.shape
    num_tags = tag_vectors.shape[0]
    total = matrices.new_zeros(())
    for b in range(batch):
        proj = matrices[b] @ tag_vectors.T  # (M, C): (A t_c)_m
        scores = proj.max(dim=0).values if reduction == "max" else proj.square().sum(dim=0).sqrt()
        pos = [c for c in range(num_tags) if targets[b, c] == 1]
        neg = [c for c in range(num_tags) if targets[b, c] != 1]  # 0 and -1 "unknown"
        rank = matrices.new_zeros(())
        if pos and neg:
            pair_sum = matrices.new_zeros(())
            for p in pos:  # eq. 1-2: u = s_n - s_p, log(1 + e^u)
                pair_sum = pair_sum + torch.log(1 + torch.exp(scores[neg] - scores[p])).sum()
            rank = pair_sum / (len(pos) * len(neg) if form == "per_pair" else len(pos))
        elif pos and form == "per_positive":  # released code: v = -s_p when there is no negative
            rank = torch.log(1 + torch.exp(-scores[pos])).sum() / len(pos)
        weight = 1.0
        if use_sdw and len(pos) > 1:  # eq. 3, unbiased variance per dimension
            vecs = tag_vectors[pos]
            mean = vecs.sum(dim=0) / len(pos)
            weight = 1.0 + (((vecs - mean) ** 2).sum(dim=0) / (len(pos) - 1)).sum()
        reg = matrices.new_zeros(())
        if rows > 1:  # eq. 4, unbiased variance across rows
            mean_row = matrices[b].sum(dim=0) / rows
            reg = (((matrices[b] - mean_row) ** 2).sum(dim=0) / (rows - 1)).sum()
        per_image = (1 - lam) * weight * rank + lam * reg  # eq. 5
        doubled = form == "per_positive" and reg_lambda is not None
        total = total + (2 * per_image if doubled else per_image)
    return total / batch


def make_case(
    batch: int, rows: int, dim: int, tags: int, seed: int, p_pos: float = 0.3, dtype: torch.dtype = F64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    matrices = torch.randn(batch, rows, dim, generator=gen, dtype=dtype)
    vectors = torch.nn.functional.normalize(torch.randn(tags, dim, generator=gen, dtype=dtype), dim=1)
    draw = torch.rand(batch, tags, generator=gen)
    targets = torch.where(draw < p_pos, 1, torch.where(draw < p_pos + 0.15, -1, 0))
    return matrices, vectors, targets


def released_style_loss(flat: torch.Tensor, wordvecs: torch.Tensor, y: torch.Tensor, weight: float | None) -> torch.Tensor:
    """The released SDLLoss's computation in its own terms (ZS_SDL SDL_loss.py, rewritten here):
    the head's flat output viewed as (B, d, M) with row m = flat[:, m::M] (:30), scores max over
    rows (:35-39), negatives = every label that is not 1 (:46), v = -s_p without a negative
    (:51-52), rank sum / |P| times 1 + SDW (torch.var, unbiased; 0 for one positive, :61, :70-78),
    then 2 [(1 - w) rank + w sum var over rows] when a weight is given (:63-65, :81-85)."""
    batch, dim = flat.shape[0], wordvecs.shape[1]
    un_flat = flat.view(batch, dim, -1)  # (B, d, M)
    rows = un_flat.shape[2]
    dots = torch.cat([(un_flat[:, :, m].unsqueeze(2) * wordvecs).sum(dim=1).unsqueeze(2) for m in range(rows)], dim=2)
    scores = dots.max(dim=-1).values  # (B, C)
    losses = []
    for i in range(batch):
        pos = scores[i, y[i] == 1]
        neg = scores[i, (1 - y[i]).bool()]
        v = -pos.unsqueeze(1) if len(neg) == 0 else neg.unsqueeze(0) - pos.unsqueeze(1)
        rel = wordvecs[0][:, y[i] == 1]
        diversity = (rel * 0).sum() if rel.shape[1] == 1 else torch.var(rel, dim=1).sum()
        loss = (1 + diversity) * torch.log(1 + torch.exp(v)).sum() / pos.shape[0]
        if weight is not None:
            loss = 2 * ((1 - weight) * loss + weight * torch.var(un_flat[i], dim=1).sum())
        losses.append(loss)
    return torch.stack(losses).mean()


# ---------------------------------------------------------------------------- reference loop


@pytest.mark.parametrize("variant", NAMES)
@pytest.mark.parametrize("use_sdw", [True, False])
@pytest.mark.parametrize("reduction", ["max", "l2"])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("reg_lambda", [0.3, 0.0, None])
def test_matches_reference_loop(variant: str, use_sdw: bool, reduction: str, rows: int, reg_lambda: float | None) -> None:
    matrices, vectors, targets = make_case(6, rows, 5, 13, seed=rows * 7 + len(FORM[variant]))
    targets[0] = 1  # no negative
    targets[1] = 0  # no positive
    targets[2] = torch.where(torch.arange(13) == 4, 1, -1)  # one positive, unknowns as negatives
    got = sdl_loss(matrices, vectors, targets, reg_lambda, variant, use_sdw=use_sdw, reduction=reduction)
    want = reference_loss(matrices, vectors, targets, reg_lambda, variant, use_sdw, reduction)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_aliases_compute_their_forms() -> None:
    matrices, vectors, targets = make_case(5, 3, 6, 11, seed=21)
    for alias, form in (("official", "per_positive"), ("paper", "per_pair")):
        assert sdl_loss(matrices, vectors, targets, 0.3, alias).item() == sdl_loss(matrices, vectors, targets, 0.3, form).item()
    # The default is the released code's form.
    assert sdl_loss(matrices, vectors, targets).item() == sdl_loss(matrices, vectors, targets, 0.3, "per_positive").item()
    # The forms differ by more than a constant: per_positive's rank term grows with |N|.
    ratio = sdl_loss(matrices, vectors, targets, 0.0, "per_positive") / sdl_loss(matrices, vectors, targets, 0.0, "per_pair")
    assert ratio.item() > 2.0


@pytest.mark.parametrize("weight", [0.3, 0.01, 0.0, None])
@pytest.mark.parametrize("use_sdw_targets", [True, False])
def test_per_positive_is_the_released_computation(weight: float | None, use_sdw_targets: bool) -> None:
    """per_positive against the released SDLLoss's own steps on its (B, d*M) head output."""
    batch, dim, rows, tags = 7, 6, 3, 10
    gen = torch.Generator().manual_seed(5 + use_sdw_targets)
    flat = torch.randn(batch, dim * rows, generator=gen, dtype=F64)
    vectors = torch.nn.functional.normalize(torch.randn(tags, dim, generator=gen, dtype=F64), dim=1)
    draw = torch.rand(batch, tags, generator=gen)
    targets = torch.where(draw < 0.3, 1, torch.where(draw < 0.5, -1, 0))
    targets[:, 0] = 1  # the released code gives NaN for an image without a positive
    targets[1] = 1  # no negative: the zero-score comparison
    if not use_sdw_targets:
        targets[2:] = torch.where(torch.arange(tags) == 3, 1, 0)  # one positive each: SDW 0
    want = released_style_loss(flat, vectors.T.unsqueeze(0), targets, weight)
    matrices = flat.view(batch, dim, rows).transpose(1, 2)  # (B, M, d): row m = flat[:, m::M]
    got = sdl_loss(matrices, vectors, targets, weight, "per_positive")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", FORMS)
def test_gradients_match_reference_loop(variant: str) -> None:
    matrices, vectors, targets = make_case(6, 4, 8, 40, seed=11)
    targets[3] = 1
    for use_sdw in (True, False):
        a_ref, t_ref = matrices.clone().requires_grad_(), vectors.clone().requires_grad_()
        a_got, t_got = matrices.clone().requires_grad_(), vectors.clone().requires_grad_()
        reference_loss(a_ref, t_ref, targets, 0.3, variant, use_sdw).backward()
        sdl_loss(a_got, t_got, targets, 0.3, variant, use_sdw=use_sdw, max_pair_elements=97).backward()
        torch.testing.assert_close(a_got.grad, a_ref.grad, rtol=1e-10, atol=1e-12)
        if not use_sdw:
            # With SDW the reference also differentiates w_d through the word vectors; ours
            # treats w_d as a constant weight, so tag-vector gradients are compared without it.
            torch.testing.assert_close(t_got.grad, t_ref.grad, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- hand-worked


def hand_case() -> tuple[torch.Tensor, torch.Tensor]:
    # A = [[1, 0], [0, 1]] (M=2, d=2); t0 = (1, 0), t1 = (0, 2), t2 = (1, 1).
    # Row projections: t0 -> (1, 0), t1 -> (0, 2), t2 -> (1, 1); max over rows: s = (1, 2, 1).
    matrices = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=F64)
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=F64)
    return matrices, vectors


def test_hand_worked_two_positives() -> None:
    matrices, vectors = hand_case()
    targets = torch.tensor([[1, 1, 0]])
    # P = {0, 1}, N = {2}: u_02 = 1 - 1 = 0, u_12 = 1 - 2 = -1   (eq. 1)
    # pair sum = log 2 + log(1 + e^-1) = 0.693147 + 0.313262 = 1.006409
    # rank (paper, /|P||N| = 2) = rank (official, /|P| = 2) = 0.503205   (eq. 2)
    # SDW: per-dim unbiased var of (1,0),(0,2): (1-0)^2/2 = 0.5, (0-2)^2/2 = 2 -> w = 3.5   (eq. 3)
    # reg: per-dim var of rows (1,0),(0,1): 0.5 + 0.5 = 1.0   (eq. 4)
    # paper: 0.7 * 3.5 * 0.503205 + 0.3 * 1.0 = 1.232851 + 0.3 = 1.532851   (eq. 5)
    # official: 2 * 1.532851 = 3.065702
    rank = (math.log(2) + softplus(-1.0)) / 2
    assert rank == pytest.approx(0.503205, abs=1e-6)
    paper = sdl_loss(matrices, vectors, targets, 0.3, "paper")
    official = sdl_loss(matrices, vectors, targets, 0.3, "official")
    assert paper.item() == pytest.approx(0.7 * 3.5 * rank + 0.3, rel=1e-12)
    assert paper.item() == pytest.approx(1.532851, abs=1e-6)
    assert official.item() == pytest.approx(3.065702, abs=1e-6)
    no_sdw = sdl_loss(matrices, vectors, targets, 0.3, "paper", use_sdw=False)
    assert no_sdw.item() == pytest.approx(0.7 * rank + 0.3, rel=1e-12)  # 0.652244
    # l2 over rows: s = (|(1,0)|, |(0,2)|, |(1,1)|) = (1, 2, sqrt 2): u = sqrt2 - 1, sqrt2 - 2
    l2 = sdl_loss(matrices, vectors, targets, 0.3, "paper", reduction="l2")
    r2 = math.sqrt(2)
    assert l2.item() == pytest.approx(0.7 * 3.5 * (softplus(r2 - 1) + softplus(r2 - 2)) / 2 + 0.3, rel=1e-12)


def test_hand_worked_unknown_counts_as_negative() -> None:
    matrices, vectors = hand_case()
    targets = torch.tensor([[0, 1, -1]])  # tag 2 "unknown": a negative, as in the released code
    # P = {1} (s=2), N = {0, 2} (s=1, 1): u = -1, -1; pair sum = 2 * 0.313262 = 0.626523
    # paper rank = 0.626523 / (1 * 2) = 0.313262; official rank = 0.626523 / 1
    # one positive: w = 1; reg = 1.0
    # paper: 0.7 * 0.313262 + 0.3 = 0.519283; official: 2 * (0.7 * 0.626523 + 0.3) = 1.477133
    paper = sdl_loss(matrices, vectors, targets, 0.3, "paper")
    official = sdl_loss(matrices, vectors, targets, 0.3, "official")
    assert paper.item() == pytest.approx(0.519283, abs=1e-6)
    assert official.item() == pytest.approx(1.477133, abs=1e-6)
    assert paper.item() == pytest.approx(0.7 * softplus(-1.0) + 0.3, rel=1e-12)


def test_hand_worked_gradient() -> None:
    # A = [[2, 0], [0, 1]]; t0 = (1, 0) -> rows (2, 0), s0 = 2 (row 0); t1 = (0, 1) -> (0, 1),
    # s1 = 1 (row 1); t2 = (1, 1) -> (2, 1), s2 = 2 (row 0). No ties, so the max picks one row.
    matrices = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]], dtype=F64, requires_grad=True)
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=F64)
    targets = torch.tensor([[0, 1, 0]])
    loss = sdl_loss(matrices, vectors, targets, 0.5, "paper")
    # P = {1}, N = {0, 2}: u = 1, 1; rank = 2 sp(1) / 2 = sp(1) = 1.313262; w = 1 (one positive)
    # reg: dims (2, 0) -> 2, (0, 1) -> 0.5: 2.5;  L = 0.5 * 1.313262 + 0.5 * 2.5 = 1.906631
    assert loss.item() == pytest.approx(1.906631, abs=1e-6)
    loss.backward()
    # rank: dL/ds0 = dL/ds2 = sigma(1)/2, dL/ds1 = -sigma(1), sigma(1) = 0.731059
    #   s0 = A[0].t0, s2 = A[0].t2 -> dA[0] = sigma/2 (1, 0) + sigma/2 (1, 1) = (0.731059, 0.365529)
    #   s1 = A[1].t1 -> dA[1] = -sigma (0, 1) = (0, -0.731059)
    # reg: d/da (a - b)^2 / 2 = a - b: dims 0 -> (+2, -2), dim 1 -> (-1, +1)
    # total = 0.5 * rank + 0.5 * reg = [[1.365529, -0.317235], [-1.0, 0.134471]]
    want = torch.tensor([[[1.365529, -0.317235], [-1.0, 0.134471]]], dtype=F64)
    torch.testing.assert_close(matrices.grad, want, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(
    "variant, factor",
    [("paper", 1.0), ("official", 2.0), ("per_pair", 1.0), ("per_positive", 2.0)],
)
def test_no_positive_gives_only_regulariser(variant: str, factor: float) -> None:
    matrices, vectors, _ = make_case(3, 4, 5, 9, seed=3)
    matrices.requires_grad_()
    targets = torch.zeros(3, 9, dtype=torch.long)
    targets[1, :4] = -1
    loss = sdl_loss(matrices, vectors, targets, 0.3, variant)
    assert torch.isfinite(loss)
    reg = matrices.detach().var(dim=1).sum(dim=-1)
    assert loss.item() == pytest.approx(factor * 0.3 * reg.mean().item(), rel=1e-12)
    loss.backward()
    assert torch.isfinite(matrices.grad).all()
    # No regulariser either (reg_lambda None or 0): nothing is left to learn from.
    assert sdl_loss(matrices, vectors, targets, None, variant).item() == 0.0
    assert sdl_loss(matrices, vectors, targets, 0.0, variant).item() == 0.0


@pytest.mark.parametrize("per_pair, per_positive", [("paper", "official"), ("per_pair", "per_positive")])
def test_no_negative(per_pair: str, per_positive: str) -> None:
    matrices, vectors, _ = make_case(2, 3, 4, 5, seed=4)
    targets = torch.ones(2, 5, dtype=torch.long)
    reg = matrices.var(dim=1).sum(dim=-1)
    paper = sdl_loss(matrices, vectors, targets, 0.3, per_pair)
    assert paper.item() == pytest.approx(0.3 * reg.mean().item(), rel=1e-12)
    official = sdl_loss(matrices, vectors, targets, 0.3, per_positive, use_sdw=False)
    scores = (matrices @ vectors.T).amax(dim=1)
    rank = torch.nn.functional.softplus(-scores).sum(dim=1) / 5  # sum_p softplus(-s_p) / |P|
    assert official.item() == pytest.approx((2 * (0.7 * rank + 0.3 * reg)).mean().item(), rel=1e-12)
    # The released weight=None: the zero-score rank term alone, not doubled.
    alone = sdl_loss(matrices, vectors, targets, None, per_positive, use_sdw=False)
    assert alone.item() == pytest.approx(rank.mean().item(), rel=1e-12)
    assert sdl_loss(matrices, vectors, targets, None, per_pair).item() == 0.0


def test_single_positive_has_unit_sdw() -> None:
    matrices, vectors, _ = make_case(3, 2, 6, 8, seed=5)
    targets = torch.zeros(3, 8, dtype=torch.long)
    targets[torch.arange(3), torch.tensor([0, 3, 7])] = 1
    targets[0, 5] = -1
    weight = semantic_diversity_weight(vectors, targets == 1)
    assert torch.equal(weight, torch.ones(3, dtype=F64))
    for variant in NAMES:
        with_sdw = sdl_loss(matrices, vectors, targets, 0.3, variant, use_sdw=True)
        without = sdl_loss(matrices, vectors, targets, 0.3, variant, use_sdw=False)
        assert with_sdw.item() == without.item()


def test_sdw_and_regulariser_helpers() -> None:
    vectors = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0], [0.0, 1.0, 1.0], [5.0, 5.0, 5.0]], dtype=F64)
    positives = torch.tensor([[True, True, True, False], [False, False, False, False], [False, True, False, True]])
    # image 0: dims (1,3,0): mean 4/3, var = ((1/3)^2 + (5/3)^2 + (4/3)^2)/2 = 42/18 = 7/3
    #          dims (0,0,1): var = 1/3; dims (2,0,1): mean 1, var = (1+1+0)/2 = 1 -> w = 1 + 11/3
    # image 1: no positive -> 1; image 2: (3,0,0),(5,5,5): var = 2 + 12.5 + 12.5 = 27 -> 28
    weight = semantic_diversity_weight(vectors, positives, max_elements=4)  # 1 row per chunk
    torch.testing.assert_close(weight, torch.tensor([1 + 11 / 3, 1.0, 28.0], dtype=F64))
    mats = torch.tensor([[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 0.0]]], dtype=F64)
    # rows (1,2),(3,6): var per dim (1-3)^2/2 = 2, (2-6)^2/2 = 8 -> 10; zeros -> 0
    torch.testing.assert_close(row_variance_regularizer(mats), torch.tensor([10.0, 0.0], dtype=F64))
    torch.testing.assert_close(row_variance_regularizer(mats[:, :1]), torch.zeros(2, dtype=F64))


def test_single_row_has_no_regulariser() -> None:
    matrices, vectors, targets = make_case(4, 1, 5, 10, seed=6)
    for variant in NAMES:
        lam = sdl_loss(matrices, vectors, targets, 0.3, variant)
        no_reg = sdl_loss(matrices, vectors, targets, 0.0, variant)
        assert torch.isfinite(lam)
        assert lam.item() == pytest.approx(0.7 * no_reg.item(), rel=1e-12)


def test_all_zero_batch() -> None:
    _, vectors, targets = make_case(4, 3, 5, 10, seed=7)
    targets[:, 0] = 1
    targets[:, 1] = 0
    matrices = torch.zeros(4, 3, 5, dtype=F64, requires_grad=True)
    # Every score is 0, so every pair gives log 2 and the paper rank term is log 2; reg = 0.
    loss = sdl_loss(matrices, vectors, targets, 0.3, "paper", use_sdw=False)
    assert loss.item() == pytest.approx(0.7 * math.log(2), rel=1e-12)
    loss.backward()
    assert torch.isfinite(matrices.grad).all()
    # All-zero targets: no positive anywhere, only the (zero) regulariser.
    zero = sdl_loss(matrices, vectors, torch.zeros_like(targets), 0.3, "official")
    assert zero.item() == 0.0


def test_fast0tag_is_paper_rank_without_regulariser() -> None:
    matrices, vectors, targets = make_case(5, 1, 6, 12, seed=8)
    for use_sdw in (False, True):
        got = fast0tag_loss(matrices, vectors, targets, use_sdw)
        want = reference_loss(matrices, vectors, targets, 0.0, "paper", use_sdw)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="M = 1"):
        fast0tag_loss(torch.randn(5, 2, 6, dtype=F64), vectors, targets)


def test_extreme_scores_stay_finite() -> None:
    scores = torch.tensor([[4e4, -4e4, 0.0, 3e4]], dtype=torch.float32, requires_grad=True)
    positives = torch.tensor([[True, False, False, True]])
    sums = pairwise_softplus_sum(scores, positives)
    sums.sum().backward()
    assert torch.isfinite(sums).all() and torch.isfinite(scores.grad).all()


def test_exp_fast_path_agrees_with_softplus_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # max s_n - min s_p over 80 anywhere switches every block to F.softplus (exp would
    # overflow in float32); the moderate image must get the same sum and gradient either way.
    gen = torch.Generator().manual_seed(19)
    moderate = torch.randn(1, 50, generator=gen) * 3
    wild = torch.tensor([[-60.0, 70.0, 40.0] + [0.0] * 47])  # u = 40 - (-60) = 100
    positives = torch.rand(2, 50, generator=gen) < 0.3
    positives[:, :2] = True
    positives[:, 2] = False
    calls: list[int] = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.numel())
        return torch.nn.functional.softplus(x)

    monkeypatch.setattr(pairwise_module, "F", types.SimpleNamespace(softplus=spy))
    results, paths = [], []
    for scores in (moderate, torch.cat([moderate, wild])):
        leaf = scores.clone().requires_grad_()
        sums = pairwise_softplus_sum(leaf, positives[: len(scores)])
        sums[0].backward()
        results.append((sums[0].detach(), leaf.grad[0]))
        paths.append(len(calls))
    assert paths[0] == 0 and paths[1] > 0  # exp path first, softplus path second
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("variant", FORMS)
def test_gradcheck_loss(variant: str) -> None:
    matrices, vectors, targets = make_case(3, 2, 3, 6, seed=9)
    targets[0] = 1  # exercises the official no-negative branch
    matrices.requires_grad_()
    vectors.requires_grad_()

    def fn(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return sdl_loss(a, t, targets, 0.3, variant, use_sdw=False, max_pair_elements=7)

    assert torch.autograd.gradcheck(fn, (matrices, vectors))
    assert torch.autograd.gradcheck(
        lambda a: sdl_loss(a, vectors.detach(), targets, 0.3, variant, max_pair_elements=7), (matrices,)
    )


def test_gradcheck_pairwise_function() -> None:
    gen = torch.Generator().manual_seed(10)
    scores = torch.randn(3, 7, generator=gen, dtype=F64, requires_grad=True)
    positives = torch.rand(3, 7, generator=gen) < 0.4
    positives[1] = False
    for budget in (1, 8, 1000):
        assert torch.autograd.gradcheck(
            lambda s, budget=budget: pairwise_softplus_sum(s, positives, max_pair_elements=budget), (scores,)
        )


def test_pairwise_function_matches_dense_pairs() -> None:
    gen = torch.Generator().manual_seed(12)
    scores = torch.randn(4, 9, generator=gen, dtype=F64)
    positives = torch.rand(4, 9, generator=gen) < 0.5
    dense = torch.nn.functional.softplus(scores[:, None, :] - scores[:, :, None])  # [b, p, n]
    mask = positives[:, :, None] & ~positives[:, None, :]
    want = (dense * mask).sum(dim=(1, 2))
    torch.testing.assert_close(pairwise_softplus_sum(scores, positives, max_pair_elements=9), want)


# ---------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("variant", FORMS)
@pytest.mark.parametrize("budget", [1, 25, 61])
def test_chunked_matches_unchunked(variant: str, budget: int) -> None:
    matrices, vectors, targets = make_case(5, 3, 4, 20, seed=13, p_pos=0.5)
    results = []
    for max_elems in (budget, 10**9):
        a = matrices.clone().requires_grad_()
        t = vectors.clone().requires_grad_()
        loss = sdl_loss(a, t, targets, 0.3, variant, max_pair_elements=max_elems)
        loss.backward()
        results.append((loss.detach(), a.grad, t.grad))
    (l1, ga1, gt1), (l2, ga2, gt2) = results
    torch.testing.assert_close(l1, l2, rtol=1e-13, atol=0)
    torch.testing.assert_close(ga1, ga2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gt1, gt2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("budget", [1, 7, 30, 95, 10**6])
def test_pair_blocks_cover_every_positive_once_within_budget(budget: int) -> None:
    counts = [9, 7, 7, 4, 1, 1, 0, 0]
    tags = 10
    seen: list[tuple[int, int]] = []
    for i0, i1, j0, j1 in pair_blocks(counts, tags, budget):
        assert 0 <= i0 < i1 <= len(counts) and 0 <= j0 < j1
        assert (i1 - i0) * (j1 - j0) * tags <= max(budget, tags)  # one row is the floor
        seen += [(i, j) for i in range(i0, i1) for j in range(j0, j1)]
    assert len(seen) == len(set(seen))
    # Every real (image, positive) slot is covered; padding only for images within a block.
    assert {(i, j) for i, c in enumerate(counts) for j in range(c)} <= set(seen)
    assert all(j < counts[0] for _, j in seen)
    assert pair_blocks([], tags, budget) == [] and pair_blocks([0, 0], tags, budget) == []


def test_moderate_size_small_budget_is_exact_and_keeps_no_chunks() -> None:
    batch, rows, dim, tags = 8, 2, 16, 2000
    matrices, vectors, targets = make_case(batch, rows, dim, tags, seed=14, p_pos=0.3, dtype=torch.float32)
    matrices.requires_grad_()
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    budget = 20_000  # 10 rows of 2000 tags: ~480 chunks for ~4800 positives
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = sdl_loss(matrices, vectors, targets, 0.3, "paper", max_pair_elements=budget)
    loss.backward()
    # ~4800 positive rows x 2000 tags = 9.6M pair elements; autograd keeps none of them.
    assert max(saved) <= batch * rows * tags
    assert sum(saved) <= 8 * (batch * rows * tags + tags * dim)
    # Independent check in float64: per-image dense (P, N) pair matrices and explicit eq. 3-5.
    a64, t64 = matrices.detach().double(), vectors.double()
    scores = (a64 @ t64.T).amax(dim=1)
    want = []
    for b in range(batch):
        pos, neg = targets[b] == 1, targets[b] != 1
        pairs = torch.nn.functional.softplus(scores[b, neg][None, :] - scores[b, pos][:, None])
        rank = pairs.sum() / (pos.sum() * neg.sum())
        w = 1 + t64[pos].var(dim=0).sum()
        want.append(0.7 * w * rank + 0.3 * a64[b].var(dim=0).sum())
    assert loss.item() == pytest.approx(torch.stack(want).mean().item(), rel=2e-5)
    unchunked = matrices.detach().clone().requires_grad_()
    sdl_loss(unchunked, vectors, targets, 0.3, "paper").backward()
    torch.testing.assert_close(matrices.grad, unchunked.grad, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------- dtypes and devices


def test_float32_result_and_agreement_with_float64() -> None:
    matrices, vectors, targets = make_case(6, 3, 8, 30, seed=15)
    l64 = sdl_loss(matrices, vectors, targets, 0.3, "official")
    l32 = sdl_loss(matrices.float(), vectors.float(), targets, 0.3, "official")
    assert l64.dtype == F64 and l32.dtype == torch.float32
    assert l32.item() == pytest.approx(l64.item(), rel=1e-5)


def test_low_precision_and_autocast_compute_in_float32() -> None:
    matrices, vectors, targets = make_case(4, 3, 8, 30, seed=16, dtype=torch.float32)
    plain = sdl_loss(matrices, vectors, targets)
    bf16 = matrices.bfloat16().requires_grad_()
    low = sdl_loss(bf16, vectors.bfloat16(), targets)
    assert low.dtype == torch.float32
    low.backward()
    assert bf16.grad is not None and bf16.grad.dtype == torch.bfloat16
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        auto = sdl_loss(matrices, vectors, targets)
    assert auto.dtype == torch.float32
    assert auto.item() == pytest.approx(plain.item(), rel=1e-6)


@pytest.mark.gpu
@needs_cuda
def test_cuda_matches_cpu() -> None:
    matrices, vectors, targets = make_case(6, 3, 8, 50, seed=17, dtype=torch.float32)
    for variant in FORMS:
        cpu = sdl_loss(matrices, vectors, targets, 0.3, variant)
        cuda = sdl_loss(matrices.cuda(), vectors.cuda(), targets.cuda(), 0.3, variant, max_pair_elements=100)
        assert cuda.item() == pytest.approx(cpu.item(), rel=1e-5)
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            auto = sdl_loss(matrices.cuda(), vectors.cuda(), targets.cuda(), 0.3, variant)
        assert auto.dtype == torch.float32
        assert auto.item() == pytest.approx(cpu.item(), rel=1e-5)
        fixed = sdl_loss(matrices.cuda(), vectors.cuda(), targets.cuda(), 0.3, variant, max_positives=_bound(targets))
        assert fixed.item() == pytest.approx(cpu.item(), rel=1e-5)


# ---------------------------------------------------------------------------- validation


def test_input_validation() -> None:
    matrices, vectors, targets = make_case(2, 3, 4, 5, seed=18)
    with pytest.raises(ValueError, match="tag_vectors"):
        sdl_loss(matrices, vectors[:, :3], targets)
    with pytest.raises(ValueError, match="matrices"):
        sdl_loss(matrices[0], vectors, targets)
    with pytest.raises(ValueError, match="targets"):
        sdl_loss(matrices, vectors, targets[:, :4])
    with pytest.raises(ValueError, match="targets"):
        sdl_loss(matrices, vectors, targets[0])
    with pytest.raises(ValueError, match="variant"):
        sdl_loss(matrices, vectors, targets, variant="released")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        sdl_loss(matrices, vectors, targets, reduction="mean")  # type: ignore[arg-type]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="reg_lambda"):
            sdl_loss(matrices, vectors, targets, reg_lambda=bad)
    with pytest.raises(ValueError, match="max_pair_elements"):
        sdl_loss(matrices, vectors, targets, max_pair_elements=0)
    # The boundaries of [0, 1] are valid.
    assert torch.isfinite(sdl_loss(matrices, vectors, targets, reg_lambda=0))
    assert torch.isfinite(sdl_loss(matrices, vectors, targets, reg_lambda=1.0))


# ---------------------------------------------------------------------------- fixed slots (no host sync)


def _bound(targets: torch.Tensor) -> int:
    return int((targets == 1).sum(dim=1).max())


@pytest.mark.parametrize("variant", FORMS)
@pytest.mark.parametrize("use_sdw", [True, False])
@pytest.mark.parametrize("slack", [0, 3, 100])
@pytest.mark.parametrize("budget", [1, 37, None])
def test_fixed_slots_match_reference_loop(variant: str, use_sdw: bool, slack: int, budget: int | None) -> None:
    matrices, vectors, targets = make_case(6, 3, 5, 13, seed=29 + slack)
    targets[0] = 1  # no negative: |P| = C, so the bound is C and slack past it is clamped
    targets[1] = 0  # no positive
    targets[2] = torch.where(torch.arange(13) == 4, 1, -1)
    a_ref, a_got = matrices.clone().requires_grad_(), matrices.clone().requires_grad_()
    want = reference_loss(a_ref, vectors, targets, 0.3, variant, use_sdw)
    got = sdl_loss(a_got, vectors, targets, 0.3, variant, use_sdw=use_sdw,
                   max_pair_elements=budget, max_positives=_bound(targets) + slack)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    want.backward()
    got.backward()
    torch.testing.assert_close(a_got.grad, a_ref.grad, rtol=1e-10, atol=1e-12)


def test_fixed_slots_gradcheck_and_tag_vector_gradient() -> None:
    matrices, vectors, targets = make_case(4, 2, 3, 9, seed=31)
    bound = _bound(targets) + 1
    scores = (matrices @ vectors.T).amax(dim=1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s: pairwise_module.pairwise_softplus_sum(s, targets == 1, max_pair_elements=5, max_positives=bound),
        (scores,),
    )
    t_ref, t_got = vectors.clone().requires_grad_(), vectors.clone().requires_grad_()
    reference_loss(matrices, t_ref, targets, 0.3, "paper", use_sdw=False).backward()
    sdl_loss(matrices, t_got, targets, 0.3, "paper", use_sdw=False, max_positives=bound).backward()
    torch.testing.assert_close(t_got.grad, t_ref.grad, rtol=1e-10, atol=1e-12)


def test_fixed_slots_sdw_hand_worked_and_zero_bound() -> None:
    vectors = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0], [0.0, 1.0, 1.0], [5.0, 5.0, 5.0]], dtype=F64)
    positives = torch.tensor([[True, True, True, False], [False, False, False, False], [False, True, False, True]])
    weight = semantic_diversity_weight(vectors, positives, max_elements=4, max_positives=3)
    torch.testing.assert_close(weight, torch.tensor([1 + 11 / 3, 1.0, 28.0], dtype=F64))  # as worked above
    matrices, vectors, _ = make_case(3, 2, 4, 6, seed=32)
    empty = torch.zeros(3, 6, dtype=torch.long)
    assert sdl_loss(matrices, vectors, empty, 0.3, max_positives=0).item() == pytest.approx(
        sdl_loss(matrices, vectors, empty, 0.3).item(), rel=1e-12
    )


def test_fixed_slots_reject_an_image_over_the_bound() -> None:
    matrices, vectors, targets = make_case(3, 2, 4, 10, seed=33)
    targets[1] = 1
    with pytest.raises(RuntimeError, match="more than max_positives = 4"):
        sdl_loss(matrices, vectors, targets, max_positives=4)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="max_positives"):
            sdl_loss(matrices, vectors, targets, max_positives=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", FORMS)
def test_fixed_slots_never_read_data_back_to_the_host(variant: str) -> None:
    # Tensors on the meta device have shapes but no values: .item(), .tolist(), float(),
    # nonzero() and a Python `if` on a tensor all fail there. The fixed form's forward and
    # backward run through, so nothing in them waits for the device (a GPU's queue stays full).
    matrices = torch.randn(96, 7, 300, device="meta", requires_grad=True)
    vectors = torch.randn(7186, 300, device="meta")
    targets = torch.zeros(96, 7186, dtype=torch.long, device="meta")
    loss = sdl_loss(matrices, vectors, targets, 0.3, variant, max_positives=60)
    loss.backward()
    assert loss.shape == () and matrices.grad.shape == matrices.shape
    with pytest.raises((NotImplementedError, RuntimeError)):  # the data-sized form needs the values
        sdl_loss(matrices, vectors, targets, 0.3, variant)
