"""Tests of sdl.eval.metrics against independent computations: sklearn, slow loops, hand-worked cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sdl.eval import ranking
from sdl.eval.metrics import (
    average_precision_per_tag,
    chance_map,
    evaluate,
    mean_average_precision,
    precision_recall_f1_at_k,
    precision_recall_f1_at_ks,
)
from tests.helpers.scoring import ref_open_images_ap

PROTOCOLS = ("sdl", "all")


# --------------------------------------------------------------------------- references
# Written from the definitions (paper section 4.1; official average_precision / calc_F1):
# sort, cumulative precision, per-image top k. Ties: stable descending order.


def _filter(
    scores: np.ndarray, targets: np.ndarray, protocol: str
) -> tuple[np.ndarray, np.ndarray]:
    pos = targets == 1
    if protocol == "sdl":
        keep = pos.any(axis=1)
        return scores[keep], pos[keep]
    return scores, pos


def ref_ap(scores: np.ndarray, targets: np.ndarray, protocol: str) -> np.ndarray:
    s, pos = _filter(scores, targets, protocol)
    out = []
    for c in range(s.shape[1]):
        order = np.argsort(-s[:, c], kind="stable")
        hit = pos[order, c]
        if not hit.any():
            out.append(0.0)
            continue
        precision_at_i = np.cumsum(hit) / np.arange(1, hit.size + 1)
        out.append(precision_at_i[hit].mean())
    return 100.0 * np.array(out)


def ref_prf(
    scores: np.ndarray, targets: np.ndarray, k: int, protocol: str
) -> tuple[float, float, float]:
    s, pos = _filter(scores, targets, protocol)
    hits = n_pos = 0
    for i in range(s.shape[0]):
        top = np.argsort(-s[i], kind="stable")[:k]
        hits += int(pos[i, top].sum())
        n_pos += int(pos[i].sum())
    p = hits / (s.shape[0] * k) if s.shape[0] else 0.0
    r = hits / n_pos if n_pos else 0.0
    f1 = 2 * p * r / (p + r) if p and r else 0.0
    return 100 * p, 100 * r, 100 * f1


def random_case(
    n: int, c: int, rate: float = 0.1, seed: int = 0, empty_images: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Tie-free float scores; targets in {1, 0, -1} with every tag having a positive."""
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n * c).reshape(n, c).astype(np.float64) / (n * c)  # distinct
    targets = (rng.random((n, c)) < rate).astype(np.int8)
    targets[rng.random((n, c)) < 0.05] = -1  # unknown labels must not count
    targets[rng.integers(0, n, size=c), np.arange(c)] = 1
    if empty_images:
        targets[-empty_images:] = 0
    return scores, targets


# --------------------------------------------------------------------------- hand-worked case
# 4 images x 3 tags.  Image 3 has no positive; tag 2 has none either (only an unknown -1).
HAND_SCORES = np.array(
    [
        [0.90, 0.10, 0.50],
        [0.80, 0.70, 0.20],
        [0.30, 0.60, 0.40],
        [0.95, 0.05, 0.60],
    ]
)
HAND_TARGETS = np.array(
    [
        [1, 0, 0],
        [0, 1, 0],
        [1, 0, -1],
        [0, 0, 0],
    ]
)


def test_hand_ap() -> None:
    # "all": tag 0 ranks i3(-) i0(+) i1(-) i2(+): precisions 1/2, 2/4 -> AP 0.5.
    #        tag 1 ranks i1(+) first -> AP 1.  tag 2 has no positive -> 0.   mAP = 150/3 = 50.
    # "sdl": i3 dropped; tag 0 ranks i0(+) i1(-) i2(+): (1 + 2/3) / 2 = 5/6; tag 1 -> 1;
    #        tag 2 -> 0.  mAP = (83.33 + 100) / 3 = 61.11.
    s, t = HAND_SCORES, HAND_TARGETS
    np.testing.assert_allclose(average_precision_per_tag(s, t, "all"), [50, 100, 0])
    np.testing.assert_allclose(average_precision_per_tag(s, t, "sdl"), [500 / 6, 100, 0])
    assert mean_average_precision(s, t, "all") == pytest.approx(50.0)
    assert mean_average_precision(s, t, "sdl") == pytest.approx(550 / 9)
    assert mean_average_precision(s, t) == pytest.approx(550 / 9)  # default protocol: sdl


@pytest.mark.parametrize(
    ("k", "protocol", "expected"),
    [
        # top-1: i0 -> tag0 (+), i1 -> tag0 (-), i2 -> tag1 (-), i3 -> tag0 (-): 1 hit; 3 positives.
        (1, "sdl", (100 / 3, 100 / 3, 100 / 3)),  # P = 1/(3*1), R = 1/3
        (1, "all", (25.0, 100 / 3, 200 / 7)),  # P = 1/(4*1), F1 = 2(1/4)(1/3)/(7/12) = 2/7
        # top-2: i0 {t0+, t2}, i1 {t0, t1+}, i2 {t1, t2}, i3 {t0, t2}: 2 hits.
        (2, "sdl", (100 / 3, 200 / 3, 400 / 9)),  # P = 2/6, R = 2/3, F1 = 4/9
        (2, "all", (25.0, 200 / 3, 400 / 11)),  # P = 2/8, F1 = 2(1/4)(2/3)/(11/12) = 4/11
        # top-3 = all tags (k = C): every positive is a hit.
        (3, "sdl", (100 / 3, 100.0, 50.0)),  # P = 3/9, R = 1, F1 = 1/2
        (3, "all", (25.0, 100.0, 40.0)),  # P = 3/12, F1 = 2(1/4)/(5/4) = 2/5
    ],
)
def test_hand_prf(k: int, protocol: str, expected: tuple[float, float, float]) -> None:
    got = precision_recall_f1_at_k(HAND_SCORES, HAND_TARGETS, k, protocol)
    assert got == pytest.approx(expected)


def test_hand_chance() -> None:
    # Prevalences: "sdl" (3 images) 2/3, 1/3, 0 -> mean 1/3; "all" (4 images) 2/4, 1/4, 0 -> 1/4.
    assert chance_map(HAND_TARGETS, "sdl") == pytest.approx(100 / 3)
    assert chance_map(HAND_TARGETS, "all") == pytest.approx(25.0)


def test_hand_evaluate() -> None:
    # ZSL = tags {1, 2}; under "sdl" only image 1 has a positive there: tag 1 AP 1, tag 2 AP 0.
    # Its top-1 among {1, 2} is tag 1 (+): P = R = 100.
    out = evaluate(HAND_SCORES, HAND_TARGETS, seen=[0], unseen=[1, 2], ks=[1])
    assert out["images"] == {"zsl": 1, "gzsl": 3}
    assert out["zsl"]["map"] == pytest.approx(50.0)
    assert out["zsl"]["precision@1"] == pytest.approx(100.0)
    assert out["gzsl"]["map"] == pytest.approx(550 / 9)
    assert out["chance"] == pytest.approx({"zsl_map": 50.0, "gzsl_map": 100 / 3})


# --------------------------------------------------------------------------- independent checks


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ap_matches_sklearn(protocol: str) -> None:
    scores, targets = random_case(300, 20, empty_images=40, seed=1)
    s, pos = _filter(scores, targets, protocol)
    expected = [100 * average_precision_score(pos[:, c], s[:, c]) for c in range(s.shape[1])]
    got = average_precision_per_tag(scores, targets, protocol)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert mean_average_precision(scores, targets, protocol) == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("k", [1, 3, 10, 25])
def test_prf_matches_loop(protocol: str, k: int) -> None:
    scores, targets = random_case(200, 25, rate=0.15, empty_images=30, seed=2)
    got = precision_recall_f1_at_k(scores, targets, k, protocol)
    assert got == pytest.approx(ref_prf(scores, targets, k, protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_prf_at_several_k_matches_the_loop_at_each(protocol: str) -> None:
    scores, targets = random_case(200, 25, rate=0.15, empty_images=30, seed=4)
    scores[:, 5] = scores[:, 6]  # ties at the cut too
    got = precision_recall_f1_at_ks(scores, targets, [10, 1, 3, 25, 3], protocol)
    assert list(got) == [1, 3, 10, 25]
    for k, prf in got.items():
        assert prf == pytest.approx(ref_prf(scores, targets, k, protocol))
    with pytest.raises(ValueError, match="out of range"):
        precision_recall_f1_at_ks(scores, targets, [1, 26], protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.float32])
def test_ties_follow_stable_descending_order(protocol: str, dtype: type) -> None:
    # Few distinct scores: nearly every positive is tied, with positives and negatives alike.
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(150, 12)).astype(dtype)
    targets = (rng.random((150, 12)) < 0.3).astype(np.int8)
    targets[-10:] = 0
    got = average_precision_per_tag(scores, targets, protocol)
    np.testing.assert_allclose(got, ref_ap(scores, targets, protocol), atol=1e-9)
    for k in (1, 2, 5, 12):
        got = precision_recall_f1_at_k(scores, targets, k, protocol)
        assert got == pytest.approx(ref_prf(scores, targets, k, protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_small_blocks_match_loop(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Force many column/row blocks and transpose chunks, with gathered rows and columns.
    monkeypatch.setattr(ranking, "BLOCK_ELEMENTS", 97)
    monkeypatch.setattr(ranking, "TRANSPOSE_ROWS", 7)
    scores, targets = random_case(120, 15, rate=0.1, empty_images=20, seed=4)
    unseen = np.array([13, 2, 7, 9])
    seen = np.setdiff1d(np.arange(15), unseen)
    out = evaluate(scores, targets, seen, unseen, ks=[1, 3], protocol=protocol)
    s_u, t_u = scores[:, unseen], targets[:, unseen]
    assert out["zsl"]["map"] == pytest.approx(ref_ap(s_u, t_u, protocol).mean())
    assert out["gzsl"]["map"] == pytest.approx(ref_ap(scores, targets, protocol).mean())
    for k in (1, 3):
        zsl = out["zsl"]
        got = (zsl[f"precision@{k}"], zsl[f"recall@{k}"], zsl[f"f1@{k}"])
        assert got == pytest.approx(ref_prf(s_u, t_u, k, protocol))
        assert out["gzsl"][f"f1@{k}"] == pytest.approx(ref_prf(scores, targets, k, protocol)[2])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_perfect_ranking(protocol: str) -> None:
    rng = np.random.default_rng(5)
    _, targets = random_case(100, 10, empty_images=10, seed=5)
    scores = (targets == 1) + 0.5 * rng.random(targets.shape)  # every positive above every negative
    assert mean_average_precision(scores, targets, protocol) == pytest.approx(100.0)
    assert precision_recall_f1_at_k(scores, targets, 10, protocol)[1] == pytest.approx(100.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_permutation_invariance(protocol: str) -> None:
    scores, targets = random_case(150, 12, empty_images=15, seed=6)
    rng = np.random.default_rng(6)
    rows, cols = rng.permutation(150), rng.permutation(12)
    ap = average_precision_per_tag(scores, targets, protocol)
    np.testing.assert_allclose(average_precision_per_tag(scores[rows], targets[rows], protocol), ap)
    by_cols = average_precision_per_tag(scores[:, cols], targets[:, cols], protocol)
    np.testing.assert_allclose(by_cols, ap[cols])
    prf = precision_recall_f1_at_k(scores, targets, 3, protocol)
    s, t = scores[rows][:, cols], targets[rows][:, cols]
    assert precision_recall_f1_at_k(s, t, 3, protocol) == pytest.approx(prf)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chance_map_is_mean_prevalence_and_random_map(protocol: str) -> None:
    rng = np.random.default_rng(7)
    n, c = 2000, 8
    targets = (rng.random((n, c)) < np.linspace(0.05, 0.3, c)).astype(np.int8)
    targets[:100] = 0  # images without positives: dropped by "sdl" only
    _, pos = _filter(np.zeros(targets.shape), targets, protocol)
    assert chance_map(targets, protocol) == pytest.approx(100 * pos.mean(axis=0).mean())
    random_maps = [mean_average_precision(rng.random((n, c)), targets, protocol) for _ in range(30)]
    # A random ranking's expected AP exceeds the prevalence by O(log n / n): loose tolerance.
    assert np.mean(random_maps) == pytest.approx(chance_map(targets, protocol), abs=1.0)


# --------------------------------------------------------------------------- evaluate()


def test_evaluate_matches_functions_on_sliced_columns() -> None:
    scores, targets = random_case(200, 30, empty_images=25, seed=8)
    rng = np.random.default_rng(8)
    unseen = rng.choice(30, size=6, replace=False)
    seen = np.setdiff1d(np.arange(30), unseen)
    ks = [1, 3, 5]
    for protocol in PROTOCOLS:
        out = evaluate(scores, targets, seen, unseen, ks, protocol)
        assert out["protocol"] == protocol
        for task, cols in (("zsl", unseen), ("gzsl", np.arange(30))):
            s, t = scores[:, cols], targets[:, cols]
            keys = {f"{m}@{k}" for m in ("precision", "recall", "f1") for k in ks}
            assert set(out[task]) == {"map"} | keys
            assert out[task]["map"] == pytest.approx(mean_average_precision(s, t, protocol))
            for k in ks:
                p, r, f1 = precision_recall_f1_at_k(s, t, k, protocol)
                assert out[task][f"precision@{k}"] == pytest.approx(p)
                assert out[task][f"recall@{k}"] == pytest.approx(r)
                assert out[task][f"f1@{k}"] == pytest.approx(f1)
            assert out["chance"][f"{task}_map"] == pytest.approx(chance_map(t, protocol))
            expected_images = int((t == 1).any(axis=1).sum()) if protocol == "sdl" else 200
            assert out["images"][task] == expected_images


def test_evaluate_masks_order_and_json() -> None:
    scores, targets = random_case(80, 10, seed=9)
    unseen_mask = np.zeros(10, dtype=bool)
    unseen_mask[[1, 4, 8]] = True
    by_index = evaluate(scores, targets, np.flatnonzero(~unseen_mask), [8, 1, 4], ks=(2, 3))
    by_mask = evaluate(scores, targets, ~unseen_mask, unseen_mask, ks=(2, 3))
    assert by_index == by_mask
    decoded = json.loads(json.dumps(by_mask))
    assert decoded == by_mask
    for task in ("zsl", "gzsl"):
        assert all(type(v) is float for v in by_mask[task].values())
        assert type(by_mask["images"][task]) is int


def test_evaluate_errors() -> None:
    scores, targets = random_case(20, 6, seed=10)
    with pytest.raises(ValueError, match=r"k=4.*C=3"):
        evaluate(scores, targets, [0, 1, 2], [3, 4, 5], ks=[1, 4])  # 4 > 3 unseen tags
    with pytest.raises(ValueError, match="overlap"):
        evaluate(scores, targets, [0, 1, 2], [2, 3], ks=[1])
    with pytest.raises(ValueError, match="outside"):
        evaluate(scores, targets, [0, 1], [6], ks=[1])
    with pytest.raises(ValueError, match="protocol"):
        evaluate(scores, targets, [0, 1], [2], ks=[1], protocol="lesa")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- validation, edge cases


def test_validation_errors() -> None:
    scores, targets = random_case(10, 4, seed=11)
    with pytest.raises(ValueError, match="does not match"):
        mean_average_precision(scores, targets[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        mean_average_precision(scores[0], targets[0])
    for bad in (np.nan, np.inf, -np.inf):
        s = scores.copy()
        s[3, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            mean_average_precision(s, targets)
        with pytest.raises(ValueError, match="NaN or infinite"):
            precision_recall_f1_at_k(s, targets, 1)
    with pytest.raises(ValueError, match=r"k=5.*C=4"):
        precision_recall_f1_at_k(scores, targets, 5)
    with pytest.raises(ValueError, match=r"k=0"):
        precision_recall_f1_at_k(scores, targets, 0)
    with pytest.raises(ValueError, match="unknown protocol"):
        average_precision_per_tag(scores, targets, "biam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown protocol"):
        chance_map(targets, "biam")  # type: ignore[arg-type]


@pytest.mark.filterwarnings("error")  # no 0/0 RuntimeWarning may leak out
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_inputs_give_zero(protocol: str) -> None:
    empty = np.zeros((0, 5))
    assert mean_average_precision(empty, empty, protocol) == 0.0
    assert precision_recall_f1_at_k(empty, empty, 2, protocol) == (0.0, 0.0, 0.0)
    assert chance_map(empty, protocol) == 0.0
    # No positive at all: "sdl" keeps 0 images, "all" keeps them but nothing can be found.
    scores = np.random.default_rng(12).random((6, 5))
    out = evaluate(scores, np.zeros((6, 5)), [0, 1, 2], [3, 4], ks=[1, 2], protocol=protocol)
    assert out["images"] == ({"zsl": 0, "gzsl": 0} if protocol == "sdl" else {"zsl": 6, "gzsl": 6})
    for task in ("zsl", "gzsl"):
        assert all(v == 0.0 for v in out[task].values())
    assert out["chance"] == {"zsl_map": 0.0, "gzsl_map": 0.0}


def test_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    scores, targets = random_case(50, 6, seed=13)
    expected = mean_average_precision(scores, targets)
    got = mean_average_precision(torch.from_numpy(scores), torch.from_numpy(targets))
    assert got == pytest.approx(expected)
    prf = precision_recall_f1_at_k(torch.from_numpy(scores), torch.from_numpy(targets), 2)
    assert prf == pytest.approx(precision_recall_f1_at_k(scores, targets, 2))
    bf16 = torch.from_numpy(scores).to(torch.bfloat16)  # no numpy dtype: converted to float32
    assert np.isfinite(mean_average_precision(bf16, torch.from_numpy(targets)))


# --------------------------------------------------------------------------- Open Images protocol
# Targets 1 (verified positive), -1 (verified negative), 0 (not verified): LESA / BiAM.


def open_images_case(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tie-free scores; sparse verified labels (as in Open Images), some tags never verified,
    some images without a positive."""
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n * c).reshape(n, c).astype(np.float64) / (n * c)
    draw = rng.random((n, c))
    targets = np.where(draw < 0.08, 1, np.where(draw < 0.2, -1, 0)).astype(np.int8)
    targets[:, :3] = 0  # three tags nobody verified
    targets[-7:] = np.where(targets[-7:] == 1, -1, targets[-7:])  # images with negatives only
    return scores, targets


@pytest.mark.parametrize("drop", [True, False])
def test_open_images_ap_matches_a_masked_per_tag_loop(drop: bool) -> None:
    scores, targets = open_images_case(400, 30, seed=21)
    aps, scored = ref_open_images_ap(scores, targets, drop)
    assert (len(scored) == 27) if drop else (len(scored) == 30)
    got = mean_average_precision(scores, targets, "open_images", drop_unverified_tags=drop)
    assert got == pytest.approx(np.mean(aps))
    per_tag = average_precision_per_tag(scores, targets, "open_images")
    np.testing.assert_allclose(per_tag[scored], aps, atol=1e-9)
    # the default drops the unverified tags (BiAM's GZSL)
    assert mean_average_precision(scores, targets, "open_images") == pytest.approx(np.mean(ref_open_images_ap(scores, targets, True)[0]))
    # -1 and 0 differ here, unlike under "sdl"
    assert got != pytest.approx(mean_average_precision(scores, targets, "sdl"))


@pytest.mark.parametrize("k", [1, 3, 10])
def test_open_images_prf_counts_only_positives_over_kept_images(k: int) -> None:
    scores, targets = open_images_case(300, 25, seed=22)
    assert precision_recall_f1_at_k(scores, targets, k, "open_images") == pytest.approx(ref_prf(scores, targets, k, "sdl"))


def test_open_images_small_blocks_match_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranking, "BLOCK_ELEMENTS", 53)
    monkeypatch.setattr(ranking, "TRANSPOSE_ROWS", 5)
    scores, targets = open_images_case(150, 20, seed=23)
    aps, _ = ref_open_images_ap(scores, targets, True)
    assert mean_average_precision(scores, targets, "open_images") == pytest.approx(np.mean(aps))


def test_open_images_hand_worked() -> None:
    scores = np.array([[0.5, 0.2, 0.45, 0.3],
                       [0.8, 0.7, 0.1, 0.2],
                       [0.9, 0.6, 0.4, 0.1],
                       [0.1, 0.05, 0.9, 0.8]])
    targets = np.array([[1, -1, 0, 0],
                        [-1, 1, 0, 0],
                        [0, 1, -1, 0],
                        [0, 0, -1, -1]], dtype=np.int8)  # image 3: no positive, dropped
    # tag 0 over its verified images 1 (-1, 0.8) and 0 (+, 0.5): the positive at rank 2, AP 1/2
    # (under "sdl" the unverified image 2 (0.9) ranks above it too: AP 1/3); tag 1: images 1, 2
    # positive above image 0: AP 1; tag 2: only a verified negative, AP 0; tag 3: verified only
    # on the dropped image: left out of the GZSL mean, 0 in the ZSL one.
    np.testing.assert_allclose(average_precision_per_tag(scores, targets, "open_images"), [50, 100, 0, 0])
    assert average_precision_per_tag(scores, targets, "sdl")[0] == pytest.approx(100 / 3)
    assert mean_average_precision(scores, targets, "open_images") == pytest.approx(50.0)
    assert mean_average_precision(scores, targets, "open_images", drop_unverified_tags=False) == pytest.approx(37.5)
    assert chance_map(targets, "open_images") == pytest.approx(100 * (1 / 2 + 2 / 3 + 0) / 3)
    # top 1 of the 3 kept images: tag 0 each time, a positive for image 0 only; 3 positives
    assert precision_recall_f1_at_k(scores, targets, 1, "open_images") == pytest.approx((100 / 3,) * 3)

    out = evaluate(scores, targets, seen=[0, 2], unseen=[1, 3], ks=[1], protocol="open_images")
    assert out["protocol"] == "open_images"
    # ZSL (tags 1, 3): images 1 and 2; tag 1 AP 1, tag 3 unverified there but kept (BiAM ZSL): 0
    assert out["zsl"]["map"] == pytest.approx(50.0) and out["evaluated_tags"]["zsl"] == 2
    assert (out["zsl"]["precision@1"], out["zsl"]["recall@1"]) == pytest.approx((100.0, 100.0))
    assert out["chance"]["zsl_map"] == pytest.approx(50.0)
    assert out["gzsl"]["map"] == pytest.approx(50.0) and out["evaluated_tags"]["gzsl"] == 3
    assert out["images"] == {"zsl": 2, "gzsl": 3}
    assert out["labels_per_image"] == {"zsl": pytest.approx(1.0), "gzsl": pytest.approx(1.0)}


def test_evaluate_open_images_matches_the_loop_per_setting() -> None:
    scores, targets = open_images_case(300, 24, seed=24)
    unseen = np.array([0, 5, 9, 11, 17, 20])  # one never-verified tag among them
    seen = np.setdiff1d(np.arange(24), unseen)
    out = evaluate(scores, targets, seen, unseen, ks=[1, 5], protocol="open_images")
    zsl_aps, zsl_tags = ref_open_images_ap(scores[:, unseen], targets[:, unseen], drop_unverified=False)
    gzsl_aps, gzsl_tags = ref_open_images_ap(scores, targets, drop_unverified=True)
    assert out["zsl"]["map"] == pytest.approx(np.mean(zsl_aps)) and out["evaluated_tags"]["zsl"] == len(zsl_tags) == 6
    assert out["gzsl"]["map"] == pytest.approx(np.mean(gzsl_aps)) and out["evaluated_tags"]["gzsl"] == len(gzsl_tags) == 21
    for k in (1, 5):
        got = tuple(out["zsl"][f"{m}@{k}"] for m in ("precision", "recall", "f1"))
        assert got == pytest.approx(ref_prf(scores[:, unseen], targets[:, unseen], k, "sdl"))


# --------------------------------------------------------------------------- image sets, label density


@pytest.mark.parametrize("protocol", ["sdl", "all", "open_images"])
def test_each_setting_on_its_own_image_set(protocol: str) -> None:
    scores, targets = open_images_case(200, 16, seed=25)
    rng = np.random.default_rng(25)
    zsl_images, gzsl_images = rng.random(200) < 0.4, rng.random(200) < 0.8
    unseen = np.array([3, 6, 12])
    seen = np.setdiff1d(np.arange(16), unseen)
    out = evaluate(scores, targets, seen, unseen, ks=[1, 2], protocol=protocol,  # type: ignore[arg-type]
                   image_sets={"zsl": zsl_images, "gzsl": np.flatnonzero(gzsl_images)})
    alone = {setting: evaluate(scores[rows], targets[rows], seen, unseen, ks=[1, 2], protocol=protocol)  # type: ignore[arg-type]
             for setting, rows in (("zsl", zsl_images), ("gzsl", gzsl_images))}
    for setting in ("zsl", "gzsl"):
        assert out[setting] == pytest.approx(alone[setting][setting])
        assert out["images"][setting] == alone[setting]["images"][setting]
        assert out["chance"][f"{setting}_map"] == pytest.approx(alone[setting]["chance"][f"{setting}_map"])
    with pytest.raises(ValueError, match="unknown setting"):
        evaluate(scores, targets, seen, unseen, ks=[1], image_sets={"fsl": zsl_images})
    with pytest.raises(ValueError, match="shape"):
        evaluate(scores, targets, seen, unseen, ks=[1], image_sets={"zsl": zsl_images[:10]})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_labels_per_image_is_positives_per_evaluated_image(protocol: str) -> None:
    scores, targets = random_case(250, 20, rate=0.2, empty_images=30, seed=26)
    unseen = np.arange(14, 20)
    out = evaluate(scores, targets, np.arange(14), unseen, ks=[3, 5], protocol=protocol)
    for setting, cols in (("zsl", unseen), ("gzsl", np.arange(20))):
        positives = targets[:, cols] == 1
        kept = positives.any(axis=1) if protocol == "sdl" else np.ones(250, dtype=bool)
        assert out["labels_per_image"][setting] == pytest.approx(positives[kept].sum() / kept.sum())
        for k in (3, 5):  # what the paper's tables imply: K * P / R
            res = out[setting]
            assert k * res[f"precision@{k}"] / res[f"recall@{k}"] == pytest.approx(out["labels_per_image"][setting])
