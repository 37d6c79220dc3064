"""Evaluation metrics of multi-label zero-shot tagging: mAP and top-K precision/recall/F1.

The paper (Ben-Cohen et al., ICCV 2021, section 4.1 "Evaluation Metrics", Tables 1-2)
follows LESA [21]: mAP measures tag-based retrieval (rank the images for each tag) and
F1@K measures image tagging (rank the tags for each image, keep the top K). ZSL scores the
unseen tags only; GZSL scores seen and unseen tags together.

Definitions follow the released code (Alibaba-MIIL/ZS_SDL, ``src/helper_functions/
helper_functions.py``: ``average_precision``, ``mAP``, ``calc_F1``, ``get_only_relevant_gt``):

* AP of a tag: images sorted by score descending; mean, over the positive images, of the
  precision of the top i at each positive's rank i. A tag with no positive image counts 0
  (official ``average_precision`` divides by ``total + 1e-8``; BiAM does the same).
* P/R/F1@K: micro ("overall") counts: hits = positives among the top K tags of every
  image; P = hits / (images * K), R = hits / positives, F1 their harmonic mean, 0 when P or
  R is 0 (official ``calc_F1``).
* Protocol ``"sdl"`` first drops images without a positive among the evaluated tags
  (official ``get_only_relevant_gt``); ``"all"`` keeps every image (BiAM / LESA).

A target counts as positive only where it equals 1; 0 and -1 ("unknown", Open Images) are
not positive. (The official image filter and ``calc_F1`` treat any non-zero as positive,
its AP uses ``== 1``; we use ``== 1`` everywhere so an unknown label never counts as a hit.)

Ties are broken deterministically: a stable sort by descending score, tied items keep their
order (image order for AP, tag order for top K). The official code uses numpy's unstable
``argsort`` and so leaves tie order unspecified.

All metrics are percentages (0-100) as in the paper's tables. Only numpy is required; torch
tensors are accepted (converted with ``.detach().cpu().numpy()``) without importing torch.
Large matrices (100k images x 7,586 tags) are processed in blocks of columns (AP) or rows
(top K), so no full-size copy of the score matrix is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

Protocol = Literal["sdl", "all"]
PROTOCOLS: tuple[str, ...] = ("sdl", "all")

# Elements per working block (~16 MB of float32): large enough that numpy's per-call
# overhead is negligible, small enough that the temporary copies stay far below the input.
_BLOCK_ELEMENTS = 1 << 22
# Rows per chunk of the blocked transpose: a chunk of a column block fits in L1/L2 cache.
_TRANSPOSE_ROWS = 512

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "average_precision_per_tag",
    "chance_map",
    "evaluate",
    "mean_average_precision",
    "precision_recall_f1_at_k",
]


# --------------------------------------------------------------------------- validation


def _to_numpy(x: Any) -> np.ndarray:
    """Array view of ``x``; torch tensors are detected by duck typing so torch stays optional."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # bfloat16 and friends have no numpy dtype
            return t.float().numpy()
    return np.asarray(x)


def _check_inputs(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _to_numpy(scores)
    t = _to_numpy(targets)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (images, tags), got shape {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"targets shape {t.shape} does not match scores shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.integer) or np.issubdtype(s.dtype, np.floating)):
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")
    _check_targets(t)
    # min/max propagate NaN and expose +-inf without allocating a full-size mask.
    if s.size and np.issubdtype(s.dtype, np.floating) and not (np.isfinite(s.min()) and np.isfinite(s.max())):
            bad = sum(
                int(np.count_nonzero(~np.isfinite(s[r : r + _row_step(s.shape[1])])))
                for r in range(0, s.shape[0], _row_step(s.shape[1]))
            )
            raise ValueError(f"scores contain {bad} NaN or infinite value(s); all must be finite")
    return s, t


def _check_targets(t: np.ndarray) -> None:
    if t.ndim != 2:
        raise ValueError(f"targets must be 2-D (images, tags), got shape {t.shape}")
    if not (np.issubdtype(t.dtype, np.number) or t.dtype == np.bool_):
        raise ValueError(f"targets must be numeric or boolean, got dtype {t.dtype}")


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _check_k(k: Any, n_tags: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1 or k > n_tags:
        raise ValueError(f"k={int(k)} is out of range: need 1 <= k <= C={n_tags} (number of tags)")
    return int(k)


def _tag_indices(idx: Any, n_tags: int, name: str) -> np.ndarray:
    """Column indices from an index array or a boolean mask over the C tags."""
    a = _to_numpy(idx)
    if a.dtype == np.bool_:
        if a.shape != (n_tags,):
            raise ValueError(f"{name} mask has shape {a.shape}, expected ({n_tags},)")
        return np.flatnonzero(a)
    a = a.reshape(-1)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integer indices or a boolean mask, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < -n_tags or a.max() >= n_tags):
        raise ValueError(f"{name} has indices outside [0, {n_tags})")
    a = np.where(a < 0, a + n_tags, a)
    if np.unique(a).size != a.size:
        raise ValueError(f"{name} has duplicate indices")
    return a


# --------------------------------------------------------------------------- blocks


def _row_step(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, n_cols))


def _as_slice(cols: np.ndarray) -> slice | np.ndarray:
    """A contiguous ascending index range as a slice, so numpy takes a view, not a gather."""
    if cols.size and cols[-1] - cols[0] + 1 == cols.size and np.all(np.diff(cols) == 1):
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return cols


def _take(a: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray) -> np.ndarray:
    """``a[rows][:, cols]`` for one block, copying only the block."""
    c = _as_slice(cols)
    if isinstance(rows, slice) or isinstance(c, slice):
        return a[rows, c]
    return a[np.ix_(rows, c)]


def _kept_rows(targets: np.ndarray, cols: np.ndarray, protocol: str) -> np.ndarray | slice:
    """Images evaluated under ``protocol`` (official ``get_only_relevant_gt`` for "sdl")."""
    n = targets.shape[0]
    if protocol == "all":
        return slice(0, n)
    step = _row_step(cols.size)
    has_pos = np.zeros(n, dtype=bool)
    for r in range(0, n, step):
        has_pos[r : r + step] = (_take(targets, slice(r, r + step), cols) == 1).any(axis=1)
    # Every image kept: a slice lets the kernels take views instead of row gathers.
    return slice(0, n) if has_pos.all() else np.flatnonzero(has_pos)


def _n_rows(rows: np.ndarray | slice, n: int) -> int:
    return len(range(n)[rows]) if isinstance(rows, slice) else int(rows.size)


def _sub_rows(rows: np.ndarray | slice, start: int, stop: int) -> np.ndarray | slice:
    """Rows ``start:stop`` of the kept rows, as indices into the full matrix."""
    if isinstance(rows, slice):
        base = rows.start or 0
        return slice(base + start, base + stop)
    return rows[start:stop]


# --------------------------------------------------------------------------- kernels


def _transposed(block: np.ndarray) -> np.ndarray:
    """C-contiguous ``block.T``, copied in row chunks that stay in cache (several times
    faster than ``np.ascontiguousarray(block.T)`` for tall blocks)."""
    out = np.empty(block.shape[::-1], dtype=block.dtype)
    for r in range(0, block.shape[0], _TRANSPOSE_ROWS):
        out[:, r : r + _TRANSPOSE_ROWS] = block[r : r + _TRANSPOSE_ROWS].T
    return out


def _equal_before(col: np.ndarray, pos: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each image ``pos[i]``: how many earlier images have exactly ``values[i]``.

    This is the tie term of the stable descending order: a tied image is ranked after the
    tied images that come before it.
    """
    same = np.flatnonzero(np.isin(col, np.unique(values)))  # ascending image order
    w = col[same]
    order = np.argsort(w, kind="stable")  # equal values grouped, each group in image order
    ws = w[order]
    within = np.arange(same.size) - np.searchsorted(ws, ws, side="left")
    before = np.empty(same.size, dtype=np.int64)
    before[order] = within
    return before[np.searchsorted(same, pos)]


def _ap_column(col: np.ndarray, sorted_col: np.ndarray, pos: np.ndarray) -> float:
    """AP (fraction) of one tag: mean over positives of precision at the positive's rank.

    Official ``average_precision``: sort descending, ``cumsum(positive) / (1..n)`` summed at
    the positives, divided by the number of positives. Equivalent without an index sort:
    the j-th positive (by rank) at rank r_j contributes j / r_j, and r_j = 1 + the number of
    images scored above it (+ tied images before it), found by binary search in the
    value-sorted column (a value sort is several times faster than a stable argsort).
    """
    if pos.size == 0:
        return 0.0  # official: 0 / (0 + 1e-8)
    v = col[pos]
    order = np.argsort(v)  # ascending needles make the binary searches cache-friendly
    v, pos = v[order], pos[order]
    right = np.searchsorted(sorted_col, v, side="right")
    rank = (col.size - right) + 1  # images strictly above, plus itself
    # v occupies sorted_col[left:right]; another image shares it iff sorted_col[right-2] == v.
    tied = (right >= 2) & (sorted_col[np.maximum(right - 2, 0)] == v)
    if tied.any():
        rank[tied] += _equal_before(col, pos[tied], v[tied])
    rank.sort()
    return float(np.mean(np.arange(1, pos.size + 1) / rank))


def _ap_tags(
    scores: np.ndarray, targets: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray
) -> np.ndarray:
    """Per-tag AP (fractions) over the kept rows, one column block at a time."""
    n = _n_rows(rows, scores.shape[0])
    ap = np.zeros(cols.size, dtype=np.float64)
    if n == 0:
        return ap
    step = max(1, _BLOCK_ELEMENTS // n)
    for c0 in range(0, cols.size, step):
        cb = cols[c0 : c0 + step]
        block = _transposed(_take(scores, rows, cb))  # (tags, images): sort along rows
        sorted_block = np.sort(block, axis=1)
        # Flat indices of the transposed mask come grouped by tag, images ascending
        # (and a 1-D nonzero is several times faster than a 2-D one).
        flat = np.flatnonzero(_transposed(_take(targets, rows, cb) == 1))
        tag, img = np.divmod(flat, n)
        bounds = np.searchsorted(tag, np.arange(cb.size + 1))
        for j in range(cb.size):
            ap[c0 + j] = _ap_column(block[j], sorted_block[j], img[bounds[j] : bounds[j + 1]])
    return ap


def _hits_at_k(
    scores: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray | slice,
    cols: np.ndarray,
    ks: Sequence[int],
) -> tuple[dict[int, int], int]:
    """Positives among each image's top k tags (summed over images) for every k, and the
    total number of positives, over the kept rows and the given columns.

    The top k is found without a full sort: v = the k-th largest score of the image
    (``np.partition``); a positive scored above v is in, one equal to v is in if it is among
    the first ``k - #above`` tags equal to v in tag order (the stable descending order).
    Only positives are inspected, so the cost beyond the partition is O(#positives).
    """
    n, c = _n_rows(rows, scores.shape[0]), cols.size
    hits = {k: 0 for k in ks}
    n_pos = 0
    step = _row_step(c)
    k_max = max(ks)
    for r0 in range(0, n, step):
        rb = _sub_rows(rows, r0, min(n, r0 + step))
        s = _take(scores, rb, cols)
        p = _take(targets, rb, cols) == 1
        pr, pc = np.divmod(np.flatnonzero(p), c)  # 1-D nonzero: faster than 2-D
        n_pos += pr.size
        ps = s[pr, pc]
        # One partition at the largest k (numpy's SIMD path takes a single kth, several
        # kth are ~4x slower), then a sort of the small top-k_max slice gives every k-th value.
        top = np.sort(np.partition(s, c - k_max, axis=1)[:, c - k_max :], axis=1)
        for k in ks:
            v = top[:, k_max - k]
            vp = v[pr]
            hit = int(np.count_nonzero(ps > vp))
            tie = ps == vp
            if tie.any():  # e.g. the k-th tag itself is positive: resolve by tag order
                tr = np.unique(pr[tie])
                st, vt = s[tr], v[tr, None]
                need = k - np.count_nonzero(st > vt, axis=1)
                equal = st == vt
                inside = equal & (np.cumsum(equal, axis=1) <= need[:, None])
                hit += int(np.count_nonzero(inside & p[tr]))
            hits[k] += hit
    return hits, n_pos


def _prf(hits: int, n_pos: int, n_images: int, k: int) -> tuple[float, float, float]:
    """Overall P/R/F1 in percent (official ``calc_F1``), 0 instead of 0/0."""
    p = hits / (n_images * k) if n_images else 0.0
    r = hits / n_pos if n_pos else 0.0
    f1 = 2 * p * r / (p + r) if p > 0 and r > 0 else 0.0
    return 100.0 * p, 100.0 * r, 100.0 * f1


def _prevalence_map(targets: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray) -> float:
    """Mean tag prevalence in percent: expected AP of a random ranking ~ positives / images."""
    n = _n_rows(rows, targets.shape[0])
    if n == 0 or cols.size == 0:
        return 0.0
    step = _row_step(cols.size)
    pos = np.zeros(cols.size, dtype=np.int64)
    for r0 in range(0, n, step):
        block = _take(targets, _sub_rows(rows, r0, min(n, r0 + step)), cols)
        pos += np.count_nonzero(block == 1, axis=0)
    return float(100.0 * np.mean(pos / n))


# --------------------------------------------------------------------------- public API


def average_precision_per_tag(scores: Any, targets: Any, protocol: Protocol = "sdl") -> np.ndarray:
    """AP of every tag in percent, shape (C,).

    Per tag, images are ranked by descending score (stable: ties keep image order) and AP
    is the mean precision@i over the positive images (official ``average_precision``); a
    tag without positive images scores 0. ``protocol="sdl"`` first drops images without any
    positive tag (official ``get_only_relevant_gt``), ``"all"`` keeps every image.
    """
    _check_protocol(protocol)
    s, t = _check_inputs(scores, targets)
    cols = np.arange(s.shape[1])
    return 100.0 * _ap_tags(s, t, _kept_rows(t, cols, protocol), cols)


def mean_average_precision(scores: Any, targets: Any, protocol: Protocol = "sdl") -> float:
    """mAP in percent: mean of :func:`average_precision_per_tag` (official ``mAP``); 0 if C = 0."""
    ap = average_precision_per_tag(scores, targets, protocol)
    return float(ap.mean()) if ap.size else 0.0


def precision_recall_f1_at_k(
    scores: Any, targets: Any, k: int, protocol: Protocol = "sdl"
) -> tuple[float, float, float]:
    """Overall (micro) precision, recall and F1 at top-k tags per image, in percent.

    P = hits / (images * k), R = hits / positives, F1 = 2PR / (P + R), 0 when P or R is 0
    (official ``calc_F1``). Ties at the cut keep tag order. Raises ValueError unless
    1 <= k <= C.
    """
    _check_protocol(protocol)
    s, t = _check_inputs(scores, targets)
    k = _check_k(k, s.shape[1])
    cols = np.arange(s.shape[1])
    rows = _kept_rows(t, cols, protocol)
    hits, n_pos = _hits_at_k(s, t, rows, cols, [k])
    return _prf(hits[k], n_pos, _n_rows(rows, s.shape[0]), k)


def chance_map(targets: Any, protocol: Protocol = "sdl") -> float:
    """mAP of a random ranking in percent, taken as the mean tag prevalence.

    Prevalence = positives / images per tag after the protocol's image filtering; a random
    ranking's expected AP approaches it as the number of images grows (small-sample excess
    is O(log(n) / n)). A reference floor for the mAP columns of the paper's tables.
    """
    _check_protocol(protocol)
    t = _to_numpy(targets)
    _check_targets(t)
    cols = np.arange(t.shape[1])
    return _prevalence_map(t, _kept_rows(t, cols, protocol), cols)


def evaluate(
    scores: Any,
    targets: Any,
    seen: Any,
    unseen: Any,
    ks: int | Iterable[int],
    protocol: Protocol = "sdl",
) -> dict[str, Any]:
    """ZSL (unseen tags) and GZSL (seen + unseen tags) metrics as a JSON-ready dict.

    ``seen`` / ``unseen`` are index arrays or boolean masks over the C columns (disjoint).
    Image filtering (``protocol="sdl"``) is done per task, on that task's columns, as the
    official code does with ``relevant_inds``. Returns::

        {"zsl": {"map", "precision@k", "recall@k", "f1@k" for each k}, "gzsl": {...},
         "chance": {"zsl_map", "gzsl_map"}, "images": {"zsl": n, "gzsl": n},
         "protocol": protocol}

    with plain Python floats (percent) and ints.
    """
    _check_protocol(protocol)
    s, t = _check_inputs(scores, targets)
    n_tags = s.shape[1]
    seen_idx = _tag_indices(seen, n_tags, "seen")
    unseen_idx = _tag_indices(unseen, n_tags, "unseen")
    if np.intersect1d(seen_idx, unseen_idx).size:
        raise ValueError("seen and unseen tags overlap; a tag is either seen or unseen")
    k_list = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    tasks = {"zsl": np.sort(unseen_idx), "gzsl": np.union1d(seen_idx, unseen_idx)}
    for cols in tasks.values():  # reject a bad k before any heavy work
        for k in k_list:
            _check_k(k, cols.size)
    k_list = list(dict.fromkeys(int(k) for k in k_list))

    out: dict[str, Any] = {"chance": {}, "images": {}, "protocol": protocol}
    for task, cols in tasks.items():
        rows = _kept_rows(t, cols, protocol)
        n_img = _n_rows(rows, s.shape[0])
        ap = _ap_tags(s, t, rows, cols)
        res: dict[str, float] = {"map": float(100.0 * ap.mean()) if ap.size else 0.0}
        hits, n_pos = _hits_at_k(s, t, rows, cols, k_list)
        for k in k_list:
            p, r, f1 = _prf(hits[k], n_pos, n_img, k)
            res.update({f"precision@{k}": p, f"recall@{k}": r, f"f1@{k}": f1})
        out[task] = res
        out["chance"][f"{task}_map"] = _prevalence_map(t, rows, cols)
        out["images"][task] = n_img
    return {k: out[k] for k in ("zsl", "gzsl", "chance", "images", "protocol")}
