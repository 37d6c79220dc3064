"""Memory-bounded pairwise rank sums: the numerator of the SDL ranking loss (paper, eq. 1-2).

For image b with positive tags P_b and negative tags N_b the ranking loss needs

    R_b = sum_{p in P_b} sum_{n in N_b} softplus(s_n - s_p),    u_pn = s_n - s_p  (eq. 1)

A dense (B, C, C) pair tensor is 18.5 GiB at Open Images size (B=96, C=7,186). Instead the
positives of each image are gathered into a padded (B, Pmax) table ("slots"), images sorted
by their number of positives, and (images, slots, C) blocks are walked under an element
budget; since images are sorted, the images still having a positive at slot j are a prefix,
so padding only costs within a block. The gradient is accumulated while a block is live
(d softplus(u)/du = sigmoid(u)), so autograd keeps O(B*C) tensors and never a block.

Sizing that walk from the data needs the counts on the host: one synchronisation per call,
which on a GPU stalls the kernel queue until the forward pass is done. Given a bound on |P_b|
(``max_positives``, e.g. the largest label count of the training set), the "fixed" form pads
every image to that many slots instead: every shape and the block plan are then known in
advance, and nothing is read back to the host (a test runs it on the ``meta`` device, where
any data-dependent op fails). It computes more padding, which a GPU absorbs.
"""

from __future__ import annotations

import bisect
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# 256 Ki elements (1 MiB in float32) per pair block, so a block stays in a CPU core's L2 cache
# (measured fastest on the 2-core CI CPU); the forward holds about two blocks at once.
DEFAULT_MAX_PAIR_ELEMENTS: int = 1 << 18
# On a GPU small blocks cost a kernel launch each for little work: 64 Mi elements (256 MiB in
# float32) holds a whole Open Images batch (96 x ~50 slots x 7,186 tags) in one block.
# Not tuned on a GPU yet (benchmarks/bench_loss.py --device cuda measures it).
DEFAULT_MAX_PAIR_ELEMENTS_CUDA: int = 1 << 26


def default_pair_budget(device: torch.device) -> int:
    """The default element budget of one pair block on ``device``."""
    return DEFAULT_MAX_PAIR_ELEMENTS_CUDA if device.type == "cuda" else DEFAULT_MAX_PAIR_ELEMENTS


def rows_per_chunk(row_length: int, max_pair_elements: int) -> int:
    """Rows of ``row_length`` elements per block under the budget (at least one row)."""
    return max(1, max_pair_elements // max(1, row_length))


def pair_blocks(counts_desc: list[int], num_tags: int, max_pair_elements: int) -> list[tuple[int, int, int, int]]:
    """Blocks ``(img_start, img_stop, slot_start, slot_stop)`` covering every (image, positive slot).

    ``counts_desc``: positives per image, sorted descending. Each block holds at most
    ``max_pair_elements`` pair elements (images x slots x tags), but never less than one row.
    """
    ascending = counts_desc[::-1]
    blocks: list[tuple[int, int, int, int]] = []
    slot, num_slots = 0, (counts_desc[0] if counts_desc else 0)
    while slot < num_slots:
        active = len(ascending) - bisect.bisect_right(ascending, slot)  # images with count > slot
        per_image = rows_per_chunk(num_tags, max_pair_elements)
        if active <= per_image:
            stop = min(num_slots, slot + max(1, per_image // active))
            blocks.append((0, active, slot, stop))
        else:  # even one slot of all active images is over budget: split the images
            stop = slot + 1
            blocks.extend((i, min(active, i + per_image), slot, stop) for i in range(0, active, per_image))
        slot = stop
    return blocks


@dataclass(frozen=True)
class PositiveSlots:
    """Each image's positives numbered 0..|P_b|-1 ("slots"), and images sorted by |P_b|."""

    counts: torch.Tensor  # (B,) |P_b|
    order: torch.Tensor  # (B,) images by descending |P_b|
    counts_desc: list[int]  # |P_b| in that order, on the host
    img_idx: torch.Tensor  # (K,) image of each positive, grouped by image
    tag_idx: torch.Tensor  # (K,) its tag
    slot_idx: torch.Tensor  # (K,) its slot within the image
    sorted_row: torch.Tensor  # (K,) its image's row in ``order``

    @property
    def num_slots(self) -> int:
        return self.counts_desc[0] if self.counts_desc else 0


def positive_slots(positives: torch.Tensor) -> PositiveSlots:
    """Slot table of a (B, C) bool mask of positives (one host sync, for the counts)."""
    batch = positives.shape[0]
    counts = positives.sum(dim=1)
    order = torch.argsort(counts, descending=True, stable=True)
    img_idx, tag_idx = positives.nonzero(as_tuple=True)  # row-major: grouped by image
    first = torch.cumsum(counts, 0) - counts
    slot_idx = torch.arange(img_idx.numel(), device=positives.device) - first[img_idx]
    rank_of = torch.empty_like(order)
    rank_of[order] = torch.arange(batch, device=positives.device)
    return PositiveSlots(counts, order, counts[order].tolist(), img_idx, tag_idx, slot_idx, rank_of[img_idx])


def fixed_positive_slots(positives: torch.Tensor, max_positives: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tags, valid)``, both (B, S) with S = min(max_positives, C): each image's positive tags
    in its first |P_b| slots, then padding (``valid`` False, ``tags`` some negative tag).

    No host sync. An image with more than ``max_positives`` positives fails an assertion
    (raised at once on the CPU; a device-side assert on CUDA).
    """
    num_slots = min(int(max_positives), positives.shape[1])
    counts = positives.sum(dim=1)
    torch._assert_async(
        (counts <= num_slots).all(), f"an image has more than max_positives = {max_positives} positive tags"
    )
    # top-k of a 0/1 row puts every 1 first (in no particular order, which does not matter).
    flags, tags = positives.to(torch.float32).topk(num_slots, dim=1)
    return tags, flags > 0


def _walk_pair_blocks(
    pos_table: torch.Tensor,
    neg_table: torch.Tensor,
    blocks: list[tuple[int, int, int, int]],
    fast: bool,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-slot sums of softplus(s_n - s_p) and, if asked, their gradients, block by block.

    ``pos_table`` (B, S) holds positive scores (+inf in padding slots), ``neg_table`` (B, C) the
    scores with positives at -inf: both make u = -inf, where softplus and sigmoid are exactly 0,
    so no mask tensor is needed in a block. Returns ``(slot_sums (B, S), grad_pos (B, S),
    grad_neg (B, C))`` with dR/ds_p = -grad_pos and dR/ds_n = grad_neg.
    """
    slot_sums = pos_table.new_zeros(pos_table.shape)
    # dR_b/ds_n = sum_p sigmoid(u_pn) and dR_b/ds_p = -sum_n sigmoid(u_pn) fit in O(B*C),
    # so they are summed here rather than by re-walking the pairs in backward.
    grad_neg = neg_table.new_zeros(neg_table.shape) if need_grad else None
    grad_pos = pos_table.new_zeros(pos_table.shape) if need_grad else None
    for i0, i1, j0, j1 in blocks:
        # u_pn = s_n - s_p (eq. 1), shape (images, slots, tags)
        diffs = neg_table[i0:i1, None, :] - pos_table[i0:i1, j0:j1, None]
        terms = torch.exp(diffs).log1p_() if fast else F.softplus(diffs)
        slot_sums[i0:i1, j0:j1] = terms.sum(dim=2)
        del terms
        if need_grad:
            sig = diffs.sigmoid_()  # in place: the differences are not needed any more
            grad_pos[i0:i1, j0:j1] = sig.sum(dim=2)  # type: ignore[index]
            grad_neg[i0:i1] += sig[:, 0] if j1 - j0 == 1 else sig.sum(dim=1)  # type: ignore[index]
    return slot_sums, grad_pos, grad_neg


class _PairwiseSoftplusSum(torch.autograd.Function):
    """R_b = sum_{p in P_b, n in N_b} softplus(s_n - s_p) (eq. 1-2), gradient built block by block."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        scores: torch.Tensor,
        positives: torch.Tensor,
        max_pair_elements: int,
    ) -> torch.Tensor:
        batch, num_tags = scores.shape
        slots = positive_slots(positives)
        num_slots = slots.num_slots
        pos_table = scores.new_full((batch, num_slots), float("inf"))
        pos_table[slots.sorted_row, slots.slot_idx] = scores[slots.img_idx, slots.tag_idx]
        neg_table = scores.masked_fill(positives, float("-inf")).index_select(0, slots.order)
        # log1p(exp(u)) is exact wherever exp(u) is finite and cheaper than softplus's
        # thresholded kernel; u <= max s_n - min s_p tells whether it can overflow.
        exp_limit = {torch.float64: 700.0, torch.float32: 80.0}.get(scores.dtype, 10.0)
        fast = num_slots > 0 and float(neg_table.max() - pos_table.min()) < exp_limit
        need_grad = bool(ctx.needs_input_grad[0])
        blocks = pair_blocks(slots.counts_desc, num_tags, max_pair_elements)
        slot_sums, grad_pos, grad_neg = _walk_pair_blocks(pos_table, neg_table, blocks, fast, need_grad)
        sums = scores.new_empty(batch)
        sums[slots.order] = slot_sums.sum(dim=1)
        if need_grad:
            grad_neg_orig = torch.empty_like(grad_neg)  # type: ignore[arg-type]
            grad_neg_orig[slots.order] = grad_neg  # type: ignore[index]
            grad_pos_flat = grad_pos[slots.sorted_row, slots.slot_idx]  # type: ignore[index]
            ctx.save_for_backward(slots.img_idx, slots.tag_idx, grad_neg_orig, grad_pos_flat)
        return sums

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_sums: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        img_idx, tag_idx, grad_neg, grad_pos = ctx.saved_tensors  # type: ignore[attr-defined]
        grad = grad_neg * grad_sums[:, None]
        # Positive columns of grad_neg are exactly 0 (sigmoid(-inf)), so writing is enough.
        grad[img_idx, tag_idx] = -grad_pos * grad_sums[img_idx]
        return grad, None, None


class _FixedPairwiseSoftplusSum(torch.autograd.Function):
    """The same sums over a fixed number of slots per image: static shapes, no host sync."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        scores: torch.Tensor,
        positives: torch.Tensor,
        max_positives: int,
        max_pair_elements: int,
    ) -> torch.Tensor:
        batch, num_tags = scores.shape
        tags, valid = fixed_positive_slots(positives, max_positives)
        pos_table = torch.where(valid, scores.gather(1, tags), float("inf"))
        neg_table = scores.masked_fill(positives, float("-inf"))
        need_grad = bool(ctx.needs_input_grad[0])
        # Every image has the same slots, so the plan depends on shapes only; softplus is
        # always safe (the log1p(exp) shortcut would need the data's range on the host).
        blocks = pair_blocks([tags.shape[1]] * batch, num_tags, max_pair_elements)
        slot_sums, grad_pos, grad_neg = _walk_pair_blocks(pos_table, neg_table, blocks, False, need_grad)
        if need_grad:
            ctx.save_for_backward(tags, grad_neg, grad_pos)
        return slot_sums.sum(dim=1)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_sums: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        tags, grad_neg, grad_pos = ctx.saved_tensors  # type: ignore[attr-defined]
        grad = grad_neg * grad_sums[:, None]
        # Padding slots carry a gradient of exactly 0 (sigmoid(-inf)), so adding them is harmless.
        grad.scatter_add_(1, tags, -grad_pos * grad_sums[:, None])
        return grad, None, None, None


def pairwise_softplus_sum(
    scores: torch.Tensor,
    positives: torch.Tensor,
    *,
    max_pair_elements: int | None = None,
    max_positives: int | None = None,
) -> torch.Tensor:
    """Per-image ``sum_{p in P} sum_{n in N} softplus(s_n - s_p)`` (eq. 1-2 numerator), shape (B,).

    ``positives`` is a (B, C) bool mask; every other tag is a negative. Peak extra memory is
    O(B*C + max_pair_elements); images without a positive or without a negative give 0.
    ``max_positives``, a bound on any image's number of positives, selects the fixed-slot form
    that never synchronises with the host (for GPUs); None sizes the work from the data.
    """
    if scores.dim() != 2 or not scores.is_floating_point():
        raise ValueError(f"scores must be a floating (B, C) tensor, got {scores.dtype} {tuple(scores.shape)}")
    if positives.dtype != torch.bool or positives.shape != scores.shape:
        raise ValueError(
            f"positives must be a bool tensor of shape {tuple(scores.shape)}, "
            f"got {positives.dtype} {tuple(positives.shape)}"
        )
    budget = default_pair_budget(scores.device) if max_pair_elements is None else int(max_pair_elements)
    if budget < 1:
        raise ValueError(f"max_pair_elements must be >= 1, got {max_pair_elements}")
    if max_positives is None:
        return _PairwiseSoftplusSum.apply(scores, positives, budget)
    check_max_positives(max_positives)
    return _FixedPairwiseSoftplusSum.apply(scores, positives, int(max_positives), budget)


def check_max_positives(max_positives: int | None) -> None:
    """Reject a ``max_positives`` that is not None or an integer >= 0."""
    if max_positives is None:
        return
    if isinstance(max_positives, bool) or not isinstance(max_positives, numbers.Integral) or max_positives < 0:
        raise ValueError(f"max_positives must be an integer >= 0 or None, got {max_positives!r}")
