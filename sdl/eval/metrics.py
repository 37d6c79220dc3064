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
* mAP: the plain mean of the tags' APs (official ``mAP``: ``ap.mean()``).

Protocols (which images, and which tags, a setting is scored on):

* ``"sdl"`` drops images without a positive among the evaluated tags (official
  ``get_only_relevant_gt``); ``"all"`` keeps every image (LESA and BiAM on NUS-WIDE).
* ``"open_images"``: LESA's and BiAM's Open Images evaluation, for targets 1 (verified
  positive), -1 (verified negative, Confidence 0) and 0 (not verified). Images without a
  positive among the evaluated tags are dropped (BiAM ``evaluate_openimages.py``:162-164,
  230-232, 284-286: "take only the images with positive annotations"). Each tag's AP ranks
  only the images verified for that tag (target != 0; LESA ``core/utils.py`` ``compute_AP``:
  ``mask = np.abs(label) == 1``), and is 0 for a tag with no positive (both ``continue``,
  leaving 0 in the mean). In GZSL the tags with no verified label on any kept image are left
  out of the mean (BiAM ``evaluate_openimages.py``:289-297, "4728+400 classes"); ZSL keeps
  every tag (:239). The mAP is the plain mean over tags (BiAM's reported ``torch.mean(ap)``),
  not its image-weighted "WEIGHTED" mAP. P/R/F1@K are as for "sdl" over the kept images:
  the top K over every evaluated tag, only a 1 is a hit (BiAM ``compute_F1``).

  BiAM's ``util_openimages.compute_AP`` (:73-93) means to compute the same per-tag AP but
  has a bug: ``predictions[(labels != 0)[:, idx_cls]]`` selects the *rows* verified for the
  tag and keeps *every column*, so it ranks all verified (image, tag) pairs of those images
  together, and its ``(label > 0).sum() == 0`` test looks at every column too. That pooled
  number is not an AP of the tag, so we follow the per-tag definition its code intends and
  LESA's code (and BiAM's own NUS-WIDE ``util_nus.compute_AP``) implements. The published
  SDL/BiAM Open Images mAPs are closer to BiAM's pooled values than to LESA's per-tag ones
  (an inference from the numbers, not verified), so ours need not match them.

A target counts as positive only where it equals 1; 0 and -1 (unknown or a verified
negative) are not positive. (The official image filter and ``calc_F1`` treat any non-zero as
positive, its AP uses ``== 1``; we use ``== 1`` everywhere so a -1 never counts as a hit.)

Ties are broken deterministically: a stable sort by descending score, tied items keep their
order (image order for AP, tag order for top K). The official code uses numpy's unstable
``argsort`` and so leaves tie order unspecified (LESA's sklearn AP groups tied scores).

All metrics are percentages (0-100) as in the paper's tables. Only numpy is required; torch
tensors are accepted (converted with ``.detach().cpu().numpy()``) without importing torch.
The block kernels are in :mod:`sdl.eval.ranking`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np

from sdl.config.metric_names import SETTINGS
from sdl.eval.ranking import (
    ap_tags,
    ap_tags_verified,
    hits_at_k,
    label_counts,
    n_rows,
    row_step,
    sub_rows,
    take,
)

Protocol = Literal["sdl", "all", "open_images"]
PROTOCOLS: tuple[str, ...] = ("sdl", "all", "open_images")

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "average_precision_per_tag",
    "chance_map",
    "evaluate",
    "mean_average_precision",
    "precision_recall_f1_at_k",
    "precision_recall_f1_at_ks",
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
        step = row_step(s.shape[1])
        bad = sum(int(np.count_nonzero(~np.isfinite(s[r : r + step]))) for r in range(0, s.shape[0], step))
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


def _image_rows(rows: Any, n_images: int, name: str) -> np.ndarray:
    """Row indices (ascending, unique) from a boolean mask over the N images or an index array."""
    a = _to_numpy(rows)
    if a.dtype == np.bool_:
        if a.shape != (n_images,):
            raise ValueError(f"{name} mask has shape {a.shape}, expected ({n_images},)")
        return np.flatnonzero(a)
    a = a.reshape(-1)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be image indices or a boolean mask, got dtype {a.dtype}")
    a = np.unique(a.astype(np.int64))
    if a.size and (a[0] < 0 or a[-1] >= n_images):
        raise ValueError(f"{name} has image indices outside [0, {n_images})")
    return a


# --------------------------------------------------------------------------- protocols


def _kept_rows(
    targets: np.ndarray, cols: np.ndarray, protocol: str, within: np.ndarray | None = None
) -> np.ndarray | slice:
    """Images evaluated under ``protocol`` among ``within`` (default: every image): "all"
    keeps them all, "sdl" and "open_images" those with a positive among ``cols`` (official
    ``get_only_relevant_gt``; BiAM's "images with positive annotations")."""
    n = targets.shape[0]
    base: np.ndarray | slice = slice(0, n) if within is None else within
    if protocol == "all":
        return base
    m = n_rows(base, n)
    step = row_step(cols.size)
    has_pos = np.zeros(m, dtype=bool)
    for r in range(0, m, step):
        has_pos[r : r + step] = (take(targets, sub_rows(base, r, min(m, r + step)), cols) == 1).any(axis=1)
    # Every image kept: a slice lets the kernels take views instead of row gathers.
    if has_pos.all():
        return base
    kept = np.flatnonzero(has_pos)
    return kept if within is None else within[kept]


def _tag_ap(scores: np.ndarray, targets: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray,
            protocol: str) -> np.ndarray:
    """AP (fractions) of each tag of ``cols`` over the kept rows, as ``protocol`` ranks them."""
    if protocol == "open_images":
        return ap_tags_verified(scores, targets, rows, cols)
    return ap_tags(scores, targets, rows, cols)


def _scored_and_chance(
    targets: np.ndarray, rows: np.ndarray | slice, cols: np.ndarray, protocol: str, drop_unverified: bool
) -> tuple[np.ndarray, float]:
    """Which tags enter the mean AP, and the chance mAP in percent over them.

    Chance is the mean, over those tags, of the AP a random ranking approaches: the tag's
    prevalence among the images it is ranked over (every kept image; for "open_images" the
    kept images verified for it), with an O(log(n) / n) small-sample excess.
    """
    n = n_rows(rows, targets.shape[0])
    positives, verified = label_counts(targets, rows, cols)
    scored = np.ones(cols.size, dtype=bool)
    if protocol == "open_images":
        if drop_unverified:
            scored = verified > 0
        prevalence = np.divide(positives, verified, out=np.zeros(cols.size), where=verified > 0)
    else:
        prevalence = positives / n if n else np.zeros(cols.size)
    chance = float(100.0 * prevalence[scored].mean()) if n and scored.any() else 0.0
    return scored, chance


def _mean(ap: np.ndarray, scored: np.ndarray) -> float:
    return float(100.0 * ap[scored].mean()) if scored.any() else 0.0


def _prf(hits: int, n_pos: int, n_images: int, k: int) -> tuple[float, float, float]:
    """Overall P/R/F1 in percent (official ``calc_F1``), 0 instead of 0/0."""
    p = hits / (n_images * k) if n_images else 0.0
    r = hits / n_pos if n_pos else 0.0
    f1 = 2 * p * r / (p + r) if p > 0 and r > 0 else 0.0
    return 100.0 * p, 100.0 * r, 100.0 * f1


def _drop_default(protocol: str, drop_unverified_tags: bool | None) -> bool:
    return protocol == "open_images" if drop_unverified_tags is None else bool(drop_unverified_tags)


# --------------------------------------------------------------------------- public API


def average_precision_per_tag(scores: Any, targets: Any, protocol: Protocol = "sdl") -> np.ndarray:
    """AP of every tag in percent, shape (C,).

    Per tag, images are ranked by descending score (stable: ties keep image order) and AP
    is the mean precision@i over the positive images (official ``average_precision``); a
    tag without positive images scores 0. ``protocol="sdl"`` first drops images without any
    positive tag (official ``get_only_relevant_gt``), ``"all"`` keeps every image,
    ``"open_images"`` drops them too and ranks each tag's verified images only.
    """
    _check_protocol(protocol)
    s, t = _check_inputs(scores, targets)
    cols = np.arange(s.shape[1])
    return 100.0 * _tag_ap(s, t, _kept_rows(t, cols, protocol), cols, protocol)


def mean_average_precision(
    scores: Any, targets: Any, protocol: Protocol = "sdl", *, drop_unverified_tags: bool | None = None
) -> float:
    """mAP in percent: the plain mean of :func:`average_precision_per_tag` (official ``mAP``);
    0 if no tag counts. Under ``"open_images"`` the tags without a verified label on any kept
    image are left out (BiAM's GZSL; ``drop_unverified_tags=False`` keeps them, as its ZSL)."""
    _check_protocol(protocol)
    s, t = _check_inputs(scores, targets)
    cols = np.arange(s.shape[1])
    rows = _kept_rows(t, cols, protocol)
    scored, _ = _scored_and_chance(t, rows, cols, protocol, _drop_default(protocol, drop_unverified_tags))
    return _mean(_tag_ap(s, t, rows, cols, protocol), scored)


def precision_recall_f1_at_k(
    scores: Any, targets: Any, k: int, protocol: Protocol = "sdl"
) -> tuple[float, float, float]:
    """Overall (micro) precision, recall and F1 at top-k tags per image, in percent.

    P = hits / (images * k), R = hits / positives, F1 = 2PR / (P + R), 0 when P or R is 0
    (official ``calc_F1``). Ties at the cut keep tag order. Raises ValueError unless
    1 <= k <= C. "open_images" scores as "sdl" (only a 1 is a hit).
    """
    return precision_recall_f1_at_ks(scores, targets, [k], protocol)[int(k)]


def precision_recall_f1_at_ks(
    scores: Any, targets: Any, ks: Iterable[int], protocol: Protocol = "sdl"
) -> dict[int, tuple[float, float, float]]:
    """:func:`precision_recall_f1_at_k` for several K at once: the images are filtered and
    ranked once (one partition at the largest K), not once per K."""
    _check_protocol(protocol)
    s, t = _check_inputs(scores, targets)
    ks = sorted({_check_k(k, s.shape[1]) for k in ks})
    cols = np.arange(s.shape[1])
    rows = _kept_rows(t, cols, protocol)
    hits, n_pos = hits_at_k(s, t, rows, cols, ks)
    n_images = n_rows(rows, s.shape[0])
    return {k: _prf(hits[k], n_pos, n_images, k) for k in ks}


def chance_map(targets: Any, protocol: Protocol = "sdl", *, drop_unverified_tags: bool | None = None) -> float:
    """mAP of a random ranking in percent, taken as the mean tag prevalence.

    Prevalence = positives / images per tag after the protocol's image filtering (for
    "open_images": positives / verified images, over the tags its mAP counts); a random
    ranking's expected AP approaches it as the number of images grows (small-sample excess
    is O(log(n) / n)). A reference floor for the mAP columns of the paper's tables.
    """
    _check_protocol(protocol)
    t = _to_numpy(targets)
    _check_targets(t)
    cols = np.arange(t.shape[1])
    rows = _kept_rows(t, cols, protocol)
    return _scored_and_chance(t, rows, cols, protocol, _drop_default(protocol, drop_unverified_tags))[1]


def evaluate(
    scores: Any,
    targets: Any,
    seen: Any,
    unseen: Any,
    ks: int | Iterable[int],
    protocol: Protocol = "sdl",
    image_sets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """ZSL (unseen tags) and GZSL (seen + unseen tags) metrics as a JSON-ready dict.

    ``seen`` / ``unseen`` are index arrays or boolean masks over the C columns (disjoint).
    ``image_sets`` optionally restricts a setting to its own test images (``{"zsl": mask}``,
    a boolean mask over the N images or image indices; a setting not named uses every
    image): the released COCO code scores GZSL on ``val_17_48`` and ZSL on ``val_unseen``.
    The protocol's image filter is then applied per setting, on that setting's columns, as
    the official code does with ``relevant_inds``. Returns::

        {"zsl": {"map", "precision@k", "recall@k", "f1@k" for each k}, "gzsl": {...},
         "chance": {"zsl_map", "gzsl_map"}, "images": {"zsl": n, "gzsl": n},
         "evaluated_tags": {"zsl": n, "gzsl": n}, "labels_per_image": {"zsl": x, "gzsl": x},
         "protocol": protocol}

    with plain Python floats (percent) and ints. ``evaluated_tags`` counts the tags in the
    mAP (fewer than the columns only under "open_images" GZSL); ``labels_per_image`` is the
    label density, positives per evaluated image (K * P / R of any K).
    """
    _check_protocol(protocol)
    s, t = _check_inputs(scores, targets)
    n_tags = s.shape[1]
    seen_idx = _tag_indices(seen, n_tags, "seen")
    unseen_idx = _tag_indices(unseen, n_tags, "unseen")
    if np.intersect1d(seen_idx, unseen_idx).size:
        raise ValueError("seen and unseen tags overlap; a tag is either seen or unseen")
    unknown = sorted(set(image_sets or {}) - set(SETTINGS))
    if unknown:
        raise ValueError(f"image_sets names unknown setting(s) {unknown}; expected {list(SETTINGS)}")
    within = {task: _image_rows(rows, s.shape[0], f"image_sets[{task!r}]") for task, rows in (image_sets or {}).items()}
    k_list = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    tasks = {"zsl": np.sort(unseen_idx), "gzsl": np.union1d(seen_idx, unseen_idx)}
    for cols in tasks.values():  # reject a bad k before any heavy work
        for k in k_list:
            _check_k(k, cols.size)
    k_list = list(dict.fromkeys(int(k) for k in k_list))

    out: dict[str, Any] = {"chance": {}, "images": {}, "evaluated_tags": {}, "labels_per_image": {}}
    for task, cols in tasks.items():
        rows = _kept_rows(t, cols, protocol, within.get(task))
        n_img = n_rows(rows, s.shape[0])
        # BiAM leaves unverified tags out of its GZSL mAP only (evaluate_openimages.py:289-297 vs :239)
        scored, chance = _scored_and_chance(t, rows, cols, protocol, drop_unverified=task == "gzsl")
        res: dict[str, float] = {"map": _mean(_tag_ap(s, t, rows, cols, protocol), scored)}
        hits, n_pos = hits_at_k(s, t, rows, cols, k_list)
        for k in k_list:
            p, r, f1 = _prf(hits[k], n_pos, n_img, k)
            res.update({f"precision@{k}": p, f"recall@{k}": r, f"f1@{k}": f1})
        out[task] = res
        out["chance"][f"{task}_map"] = chance
        out["images"][task] = n_img
        out["evaluated_tags"][task] = int(scored.sum())
        out["labels_per_image"][task] = n_pos / n_img if n_img else 0.0
    out["protocol"] = protocol
    keys = ("zsl", "gzsl", "chance", "images", "evaluated_tags", "labels_per_image", "protocol")
    return {k: out[k] for k in keys}
