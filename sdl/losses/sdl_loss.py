"""The SDL loss (paper, section 3.3, eq. 1-5) and the Fast0Tag rank loss (Table 3 baseline).

Per image b with positive tags P (target == 1) and negatives N (every other tag: 0, or -1
"unknown", as the released code treats them: ``(1 - y[i]).bool()``, SDL_loss.py:46), scores
s_c = max_m (A_b t_c)_m and:

    u_pn = s_n - s_p                                                     (eq. 1)
    R_b = sum_{p in P} sum_{n in N} log(1 + exp(u_pn))
    w_d = 1 + sum_{i=1..d} var_i(P)   (unbiased, over the positive word vectors)  (eq. 3)
    L_reg = sum_{i=1..d} var_i(A_b)   (unbiased, across the M rows of A_b)        (eq. 4)

Two forms of the rank term, named after what they divide R_b by:

``per_pair`` (alias ``paper``): L_rank = R_b / (|P||N|), eq. 2 as printed (w_n = |P||N|), and
    L = 1/B sum_b [(1 - lambda) w_d L_rank + lambda L_reg] (eq. 5) with a constant lambda.
    The balance of rank and regulariser then depends on |N|: about 920x weaker rank term
    than ``per_positive`` on NUS-WIDE (|N| ~ 1,000), 7,150x on Open Images, 46x on COCO.

``per_positive`` (alias ``official``): L_rank = R_b / |P| and
    L = 1/B sum_b 2 [(1 - lambda) w_d L_rank + lambda L_reg], the released ``SDLLoss``
    (ZS_SDL src/loss_functions/SDL_loss.py:61, ``... / (num_pos)``, ``# num_neg`` commented
    out at :58; :65, ``2 * ((1 - weight) * l[i] + weight * l1_err)``). It is what the
    sentence after eq. 5 asks for: "In practice we use lambda~ = lambda / |N| as the
    regularization parameter which is invariant to the number of negative tags per image"
    (garbled in the extracted text as "A = M| P|"): eq. 5 with w_n = |P||N| and lambda / |N|
    is, per image, 1/|N| [(1 - lambda/|N|) w_d R_b / |P| + lambda L_reg], whose balance of
    rank and regulariser, like the released form's, does not depend on |N| (for |N| >> 1;
    the released form weighs the rank term by 1 - lambda instead). The released code is the
    one exact definition, and the paper's numbers came from it (section 4.1's lambda = 0.3
    is its class default, SDL_loss.py:6), so the paper's datasets train with this form.

Quirks of the released code that ``per_positive`` keeps:
  * the factor 2 (SDL_loss.py:65). It is applied whenever a regulariser weight is given,
    even lambda = 0 (``weight=0.0``); ``reg_lambda=None`` is the released ``weight=None``
    (SDL_loss.py:19-22): no regulariser and no factor 2. ``per_pair`` treats None as 0.
  * an image with no negative compares its positives with a zero score (SDL_loss.py:51-52,
    ``v = -dot_prod_pos``): R_b = sum_p log(1 + exp(-s_p)). ``per_pair`` has no pair there
    and keeps only lambda L_reg.
Where the released code gives NaN, both forms stay finite: an image with no positive
(0 / 0 and the variance of no vector) keeps only its lambda L_reg term, and M = 1 (the
unbiased variance of one row) has L_reg = 0. softplus replaces the released
``log(1 + exp(v))``, which overflows in float32 for v > ~88 (same values otherwise).
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sdl.losses.pairwise import (
    check_max_positives,
    default_pair_budget,
    fixed_positive_slots,
    pairwise_softplus_sum,
    positive_slots,
    rows_per_chunk,
)
from sdl.losses.registry import register_loss
from sdl.models.scoring import REDUCTIONS, Reduction, score_tags

Variant = Literal["per_positive", "per_pair", "official", "paper"]
VARIANTS: tuple[str, ...] = ("per_positive", "per_pair")
# The names the variants had first: "official" the released code's form, "paper" eq. 2 as printed.
VARIANT_ALIASES: dict[str, str] = {"official": "per_positive", "paper": "per_pair"}


def canonical_variant(variant: str) -> str:
    """``per_positive`` or ``per_pair`` for a variant name or alias; anything else raises."""
    name = VARIANT_ALIASES.get(variant, variant) if isinstance(variant, str) else variant
    if name not in VARIANTS:
        known = (*VARIANTS, *VARIANT_ALIASES)
        raise ValueError(f"unknown variant {variant!r}; expected one of {known}")
    return name


def _check_options(
    reg_lambda: float | None, variant: str, reduction: str, max_pair_elements: int | None,
    max_positives: int | None = None,
) -> None:
    canonical_variant(variant)
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    # `not (0 <= x <= 1)` also rejects NaN.
    if reg_lambda is not None and (
        isinstance(reg_lambda, bool) or not isinstance(reg_lambda, numbers.Real) or not 0.0 <= reg_lambda <= 1.0
    ):
        raise ValueError(f"reg_lambda must be a number in [0, 1] or None, got {reg_lambda!r}")
    if max_pair_elements is not None and int(max_pair_elements) < 1:
        raise ValueError(f"max_pair_elements must be >= 1, got {max_pair_elements}")
    check_max_positives(max_positives)


def _check_inputs(matrices: torch.Tensor, tag_vectors: torch.Tensor, targets: torch.Tensor) -> None:
    if matrices.dim() != 3 or not matrices.is_floating_point():
        raise ValueError(f"matrices must be a floating (B, M, d) tensor, got {matrices.dtype} {tuple(matrices.shape)}")
    batch, _, dim = matrices.shape
    if tag_vectors.dim() != 2 or tag_vectors.shape[1] != dim or not tag_vectors.is_floating_point():
        raise ValueError(
            f"tag_vectors must be a floating (C, {dim}) tensor to match matrices {tuple(matrices.shape)}, "
            f"got {tag_vectors.dtype} {tuple(tag_vectors.shape)}"
        )
    if batch == 0 or tag_vectors.shape[0] == 0:
        raise ValueError(f"need at least one image and one tag, got B = {batch}, C = {tag_vectors.shape[0]}")
    expected = (batch, tag_vectors.shape[0])
    if tuple(targets.shape) != expected:
        raise ValueError(f"targets must be (B, C) = {expected}, got {tuple(targets.shape)}")
    for name, tensor in (("tag_vectors", tag_vectors), ("targets", targets)):
        if tensor.device != matrices.device:
            raise ValueError(f"{name} is on {tensor.device} but matrices are on {matrices.device}")


def semantic_diversity_weight(
    tag_vectors: torch.Tensor,
    positives: torch.Tensor,
    *,
    max_elements: int | None = None,
    max_positives: int | None = None,
) -> torch.Tensor:
    """SDW ``w_d = 1 + sum_i var_i(P)`` per image (eq. 3), shape (B,); 1 with fewer than 2 positives.

    Unbiased variance over each image's positive word vectors, per dimension. It is a per-image
    weight, so it carries no gradient (the released code's word vectors are constants too).
    ``max_positives`` (a bound on |P|) pads every image to that many positives, so that no
    shape depends on the data and nothing is read back to the host.
    """
    check_max_positives(max_positives)
    budget = default_pair_budget(positives.device) if max_elements is None else int(max_elements)
    with torch.no_grad():
        vectors = tag_vectors.detach()
        batch, dim = positives.shape[0], vectors.shape[1]
        weight = vectors.new_ones(batch)
        counts = positives.sum(dim=1)
        if max_positives is None:
            slots = positive_slots(positives)
            num_slots = slots.num_slots
            if num_slots < 2:
                return weight
            # (B, Pmax) table of positive tags; padding points at tag 0 and is masked out.
            table = torch.zeros(batch, num_slots, dtype=torch.long, device=positives.device)
            table[slots.img_idx, slots.slot_idx] = slots.tag_idx
            valid = torch.arange(num_slots, device=positives.device) < counts[:, None]
        else:
            table, valid = fixed_positive_slots(positives, max_positives)
            num_slots = table.shape[1]
            if num_slots < 2:
                return weight
        mask_all = valid.to(vectors.dtype)
        counts = counts.to(vectors.dtype)
        step = rows_per_chunk(num_slots * dim, budget)
        for start in range(0, batch, step):
            rows = slice(start, start + step)
            mask = mask_all[rows, :, None]
            vecs = vectors[table[rows]] * mask  # (images, Pmax, d)
            means = vecs.sum(dim=1, keepdim=True) / counts[rows, None, None].clamp(min=1)
            # Two passes (mean, then deviations): sum(x^2) - n mean^2 cancels badly in float32.
            sq_dev = ((vecs - means) * mask).square_().sum(dim=(1, 2))
            # One positive: its deviation is exactly 0, so the variance is 0 (not NaN as torch.var).
            weight[rows] += sq_dev / (counts[rows] - 1).clamp(min=1)
        return weight


def row_variance_regularizer(matrices: torch.Tensor) -> torch.Tensor:
    """``L_reg = sum_i var_i`` across the M rows of each matrix (eq. 4), shape (B,); 0 when M = 1."""
    rows = matrices.shape[1]
    if rows < 2:
        # torch.var over a single row is NaN; a single row has no spread.
        return matrices.new_zeros(matrices.shape[0])
    # Written out rather than Tensor.var(dim=1), whose CPU kernel is ~30x slower at (96, 7, 300).
    centred = matrices - matrices.mean(dim=1, keepdim=True)
    return centred.square().sum(dim=(1, 2)) / (rows - 1)


def sdl_loss(
    matrices: torch.Tensor,
    tag_vectors: torch.Tensor,
    targets: torch.Tensor,
    reg_lambda: float | None = 0.3,
    variant: Variant = "per_positive",
    *,
    use_sdw: bool = True,
    reduction: Reduction = "max",
    max_pair_elements: int | None = None,
    max_positives: int | None = None,
) -> torch.Tensor:
    """SDL loss (eq. 5), a scalar: mean over the batch of ``(1-lambda) w_d L_rank + lambda L_reg``
    (``per_positive``: twice that, with L_rank = R_b / |P|; see the module docstring).

    Args:
        matrices: (B, M, d) per-image transformations A.
        tag_vectors: (C, d) word vectors of the training tags.
        targets: (B, C); 1 marks a positive, anything else (0, -1 "unknown") a negative.
        reg_lambda: lambda of eq. 5, in [0, 1]; None: no regulariser (the released
            ``weight=None``: for ``per_positive`` also no factor 2).
        variant: "per_positive" (alias "official", the default): the rank sum over |P|, each
            image's term doubled, as the released SDLLoss; "per_pair" (alias "paper"): the
            rank sum over |P||N|, eq. 2 as printed.
        use_sdw: weight the rank term by the SDW of eq. 3 (False: w_d = 1).
        reduction: tag score over the rows, "max" (eq. 1) or "l2" (the section 4.1 baseline).
        max_pair_elements: element budget of one working block: (positive, tag) pairs, and
            the positive word vectors gathered for the SDW (default: 256 Ki elements on the
            CPU, 64 Mi on a GPU).
        max_positives: a bound on any image's number of positives (e.g. the training set's
            largest label count). Given, every shape is fixed in advance and the loss never
            synchronises with the host, which keeps a GPU's queue full; an image over the
            bound is an error. None (default) sizes the work from the batch (one sync).

    Low-precision inputs and autocast are computed in float32; float64 stays float64.
    """
    _check_options(reg_lambda, variant, reduction, max_pair_elements, max_positives)
    _check_inputs(matrices, tag_vectors, targets)
    form = canonical_variant(variant)
    lam = 0.0 if reg_lambda is None else float(reg_lambda)
    # SDL_loss.py:63-65: the factor 2 comes with the regulariser weight, given even as 0.
    doubled = form == "per_positive" and reg_lambda is not None
    num_tags = tag_vectors.shape[0]
    # The loss sums thousands of pair terms: half precision would swamp them, so opt out of autocast.
    device_type = matrices.device.type
    no_autocast = (
        torch.autocast(device_type=device_type, enabled=False)
        if torch.amp.is_autocast_available(device_type)
        else contextlib.nullcontext()  # a device without autocast (e.g. "meta") has nothing to opt out of
    )
    with no_autocast:
        dtype = torch.float64 if matrices.dtype == torch.float64 else torch.float32
        mats = matrices.to(dtype)
        vectors = tag_vectors.to(dtype)
        positives = targets == 1
        scores = score_tags(mats, vectors, reduction)  # s_c = max_m (A t_c)_m, eq. 1
        rank_sums = pairwise_softplus_sum(
            scores, positives, max_pair_elements=max_pair_elements, max_positives=max_positives
        )
        num_pos = positives.sum(dim=1).to(dtype)
        num_neg = num_tags - num_pos
        if form == "per_pair":
            # eq. 2, w_n = |P||N|; no pair (|P| = 0 or |N| = 0) means a zero sum: 0 / 1.
            rank = rank_sums / (num_pos * num_neg).clamp(min=1)
        else:
            # SDL_loss.py:61, w_n = |P|. With no negative, v = -s_p (:51-52): each positive
            # against a 0 score.
            no_neg = num_neg == 0
            # Without a bound the check is worth its sync; with one, stay on the device.
            if max_positives is not None or bool(no_neg.any()):
                lone = positives & no_neg[:, None]
                rank_sums = rank_sums + torch.where(lone, F.softplus(-scores), 0.0).sum(dim=1)
            rank = rank_sums / num_pos.clamp(min=1)
        if use_sdw:
            sdw = semantic_diversity_weight(
                vectors, positives, max_elements=max_pair_elements, max_positives=max_positives
            )
            rank = sdw * rank
        per_image = (1.0 - lam) * rank  # eq. 5
        if lam > 0.0:
            per_image = per_image + lam * row_variance_regularizer(mats)  # eq. 4-5
        if doubled:
            per_image = 2.0 * per_image
        return per_image.mean()


def fast0tag_loss(
    matrices: torch.Tensor,
    tag_vectors: torch.Tensor,
    targets: torch.Tensor,
    use_sdw: bool = False,
    *,
    max_pair_elements: int | None = None,
    max_positives: int | None = None,
) -> torch.Tensor:
    """Fast0Tag rank loss (Zhang et al., CVPR 2016), the M = 1 baseline of Table 3.

    The pairwise rank loss of eq. 1-2 normalised by |P||N|, no regulariser; ``use_sdw`` adds the
    SDW of eq. 3 (Table 3, column b). ``matrices`` must have a single row (M = 1).
    """
    if matrices.dim() == 3 and matrices.shape[1] != 1:
        raise ValueError(f"fast0tag_loss needs one row per image (M = 1), got M = {matrices.shape[1]}")
    return sdl_loss(
        matrices,
        tag_vectors,
        targets,
        reg_lambda=0.0,
        variant="per_pair",
        use_sdw=use_sdw,
        reduction="max",
        max_pair_elements=max_pair_elements,
        max_positives=max_positives,
    )


@register_loss("sdl")
class SDLLoss(nn.Module):
    """``nn.Module`` form of :func:`sdl_loss`: ``forward(matrices, tag_vectors, targets)``."""

    def __init__(
        self,
        reg_lambda: float | None = 0.3,
        variant: Variant = "per_positive",
        use_sdw: bool = True,
        reduction: Reduction = "max",
        max_pair_elements: int | None = None,
        max_positives: int | None = None,
    ) -> None:
        super().__init__()
        _check_options(reg_lambda, variant, reduction, max_pair_elements, max_positives)
        self.reg_lambda = None if reg_lambda is None else float(reg_lambda)
        self.variant = canonical_variant(variant)
        self.use_sdw = bool(use_sdw)
        self.reduction: Reduction = reduction
        self.max_pair_elements = max_pair_elements
        self.max_positives = max_positives

    def forward(self, matrices: torch.Tensor, tag_vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sdl_loss(
            matrices,
            tag_vectors,
            targets,
            self.reg_lambda,
            self.variant,
            use_sdw=self.use_sdw,
            reduction=self.reduction,
            max_pair_elements=self.max_pair_elements,
            max_positives=self.max_positives,
        )

    def extra_repr(self) -> str:
        return (
            f"reg_lambda={self.reg_lambda}, variant={self.variant!r}, use_sdw={self.use_sdw}, "
            f"reduction={self.reduction!r}"
        )


@register_loss("fast0tag")
class Fast0TagLoss(nn.Module):
    """``nn.Module`` form of :func:`fast0tag_loss` (needs M = 1)."""

    def __init__(
        self, use_sdw: bool = False, max_pair_elements: int | None = None, max_positives: int | None = None
    ) -> None:
        super().__init__()
        _check_options(0.0, "per_pair", "max", max_pair_elements, max_positives)
        self.use_sdw = bool(use_sdw)
        self.max_pair_elements = max_pair_elements
        self.max_positives = max_positives

    def forward(self, matrices: torch.Tensor, tag_vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return fast0tag_loss(
            matrices, tag_vectors, targets, self.use_sdw, max_pair_elements=self.max_pair_elements,
            max_positives=self.max_positives,
        )

    def extra_repr(self) -> str:
        return f"use_sdw={self.use_sdw}"
