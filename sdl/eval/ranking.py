"""The block kernels under :mod:`sdl.eval.metrics`: per-tag average precision and top-K hits
over (images, tags) score matrices, without a full-size copy of the scores.

Large matrices (100k images x 7,586 tags) are processed in blocks of columns (AP) or rows
(top K). Rows are given as a slice (every image: numpy takes views) or an index array (the
images a protocol keeps). Ties follow the stable descending order: tied images keep their
order (AP), tied tags their order (top K). The protocols (which images and tags count) are
:mod:`sdl.eval.metrics`'s business; these functions only count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

# Elements per working block (~16 MB of float32): large enough that numpy's per-call
# overhead is negligible, small enough that the temporary copies stay far below the input.
BLOCK_ELEMENTS = 1 << 22
# Rows per chunk of the blocked transpose: a chunk of a column block fits in L1/L2 cache.
TRANSPOSE_ROWS = 512


# --------------------------------------------------------------------------- blocks


def row_step(n_cols: int) -> int:
    return max(1, BLOCK_ELEMENTS // max(1, n_cols))


def as_slice(cols: np.ndarray) -> slice | np.ndarray:
    """A contiguous ascending index range as a slice, so numpy takes a view, not a gather."""
    if cols.size and cols[-1] - cols[0] + 1 == cols.size and np.all(np.diff(cols) == 1):
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return cols


def take(a: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray) -> np.ndarray:
    """``a[rows][:, cols]`` for one block, copying only the block."""
    c = as_slice(cols)
    if isinstance(rows, slice) or isinstance(c, slice):
        return a[rows, c]
    return a[np.ix_(rows, c)]


def n_rows(rows: np.ndarray | slice, n: int) -> int:
    return len(range(n)[rows]) if isinstance(rows, slice) else int(rows.size)


def sub_rows(rows: np.ndarray | slice, start: int, stop: int) -> np.ndarray | slice:
    """Rows ``start:stop`` of the kept rows, as indices into the full matrix."""
    if isinstance(rows, slice):
        base = rows.start or 0
        return slice(base + start, base + stop)
    return rows[start:stop]


# --------------------------------------------------------------------------- kernels


def transposed(block: np.ndarray) -> np.ndarray:
    """C-contiguous ``block.T``, copied in row chunks that stay in cache (several times
    faster than ``np.ascontiguousarray(block.T)`` for tall blocks)."""
    out = np.empty(block.shape[::-1], dtype=block.dtype)
    for r in range(0, block.shape[0], TRANSPOSE_ROWS):
        out[:, r : r + TRANSPOSE_ROWS] = block[r : r + TRANSPOSE_ROWS].T
    return out


def equal_before(col: np.ndarray, pos: np.ndarray, values: np.ndarray) -> np.ndarray:
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


def ap_column(col: np.ndarray, sorted_col: np.ndarray, pos: np.ndarray) -> float:
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
        rank[tied] += equal_before(col, pos[tied], v[tied])
    rank.sort()
    return float(np.mean(np.arange(1, pos.size + 1) / rank))


def _column_blocks(
    scores: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(c0, block_cols, block)`` over the columns, ``block`` the (tags, images) transpose of the
    kept rows' scores, as many columns at a time as fit ``BLOCK_ELEMENTS``; none without rows."""
    n = n_rows(rows, scores.shape[0])
    if n == 0:
        return
    step = max(1, BLOCK_ELEMENTS // n)
    for c0 in range(0, cols.size, step):
        cb = cols[c0 : c0 + step]
        yield c0, cb, transposed(take(scores, rows, cb))


def _grouped_by_tag(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images of a (tags, images) mask's True entries grouped by tag, images ascending (the
    stable tie order), and each tag's bounds in them (a 1-D nonzero is several times faster
    than a 2-D one)."""
    tag, img = np.divmod(np.flatnonzero(mask), mask.shape[1])
    return img, np.searchsorted(tag, np.arange(mask.shape[0] + 1))


def ap_tags(
    scores: np.ndarray, targets: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray
) -> np.ndarray:
    """Per-tag AP (fractions) over the kept rows, one column block at a time."""
    ap = np.zeros(cols.size, dtype=np.float64)
    for c0, cb, block in _column_blocks(scores, rows, cols):
        sorted_block = np.sort(block, axis=1)  # sort along the images
        img, bounds = _grouped_by_tag(transposed(take(targets, rows, cb) == 1))
        for j in range(cb.size):
            ap[c0 + j] = ap_column(block[j], sorted_block[j], img[bounds[j] : bounds[j + 1]])
    return ap


def hits_at_k(
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
    n, c = n_rows(rows, scores.shape[0]), cols.size
    hits = {k: 0 for k in ks}
    n_pos = 0
    step = row_step(c)
    k_max = max(ks)
    for r0 in range(0, n, step):
        rb = sub_rows(rows, r0, min(n, r0 + step))
        s = take(scores, rb, cols)
        p = take(targets, rb, cols) == 1
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


def ap_tags_verified(
    scores: np.ndarray, targets: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray
) -> np.ndarray:
    """Per-tag AP (fractions) over the kept rows, each tag ranked among the images *verified*
    for it only (target != 0: a verified positive 1 or a verified negative -1); 0 for a tag
    with no positive. The Open Images protocol (see ``sdl.eval.metrics``)."""
    ap = np.zeros(cols.size, dtype=np.float64)
    for c0, cb, block in _column_blocks(scores, rows, cols):
        labels = transposed(take(targets, rows, cb))
        img, bounds = _grouped_by_tag(labels != 0)
        for j in range(cb.size):
            verified = img[bounds[j] : bounds[j + 1]]
            col = block[j, verified]
            ap[c0 + j] = ap_column(col, np.sort(col), np.flatnonzero(labels[j, verified] == 1))
    return ap


def label_counts(targets: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tag over the kept rows: positives (target 1) and verified labels (target != 0)."""
    n = n_rows(rows, targets.shape[0])
    positives = np.zeros(cols.size, dtype=np.int64)
    verified = np.zeros(cols.size, dtype=np.int64)
    step = row_step(cols.size)
    for r0 in range(0, n, step):
        block = take(targets, sub_rows(rows, r0, min(n, r0 + step)), cols)
        positives += np.count_nonzero(block == 1, axis=0)
        verified += np.count_nonzero(block != 0, axis=0)
    return positives, verified
