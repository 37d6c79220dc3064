"""Benchmark of sdl.eval.metrics: vectorised mAP and P/R/F1@K vs a per-tag / per-image loop.

The loop follows the released evaluation code (Alibaba-MIIL/ZS_SDL,
src/helper_functions/helper_functions.py): ``average_precision`` per tag (argsort, reverse,
cumulative precision, divided by positives + 1e-8) for ``mAP``, and ``calc_F1``'s per-image
loop over the ground-truth tags and the top-k of a full per-row argsort (``get_knns``).
It is our own re-implementation, run on the same data in the same process.

Also times ``evaluate()`` (ZSL + GZSL) at Open Images GZSL size in a subprocess and reports
its peak memory (tracemalloc peak of numpy allocations and the ru_maxrss increase).

Usage::

    python benchmarks/bench_metrics.py                    # 100k x 1,006, then 100k x 7,586
    python benchmarks/bench_metrics.py --images 20000 --tags 300 --repeats 1 --skip-large
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from sdl.eval.metrics import (
    average_precision_per_tag,
    evaluate,
    mean_average_precision,
    precision_recall_f1_at_k,
)

# --------------------------------------------------------------------------- data


def make_data(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 scores and int8 targets, tag prevalence uniform in 1-3% (NUS-WIDE-like).

    Generated in row blocks so no float64 full-size temporary inflates the peak memory.
    """
    rng = np.random.default_rng(seed)
    scores = np.empty((n, c), dtype=np.float32)
    targets = np.empty((n, c), dtype=np.int8)
    prevalence = rng.uniform(0.01, 0.03, size=c).astype(np.float32)
    step = max(1, (1 << 22) // c)
    for r in range(0, n, step):
        rng.random(dtype=np.float32, out=scores[r : r + step])
        targets[r : r + step] = rng.random(scores[r : r + step].shape, dtype=np.float32) < prevalence
    return scores, targets


# --------------------------------------------------------------------------- loop baseline


def loop_average_precision(output: np.ndarray, target: np.ndarray) -> float:
    """Official ``average_precision``: sort descending, precision at each positive."""
    indices = output.argsort()[::-1]
    ind = target[indices] == 1
    pos_count = np.cumsum(ind)
    total = pos_count[-1]
    pos_count[~ind] = 0
    pp = pos_count / np.cumsum(np.ones(len(output)))
    return float(np.sum(pp) / (total + 1e-8))


def loop_ap_per_tag(scores: np.ndarray, targets: np.ndarray, tags: range) -> np.ndarray:
    """Official ``mAP`` loop (before the mean), "sdl" filtering as ``get_only_relevant_gt``."""
    keep = (targets == 1).any(axis=1)
    s, t = scores[keep], targets[keep]
    return 100.0 * np.array([loop_average_precision(s[:, k], t[:, k]) for k in tags])


def loop_calc_f1(
    scores: np.ndarray, targets: np.ndarray, ks: list[int]
) -> dict[int, tuple[float, float, float]]:
    """Official ``calc_F1`` for every k, sharing one ``get_knns`` ranking."""
    keep = (targets == 1).any(axis=1)
    s, t = scores[keep], targets[keep]
    idxs = np.argsort(-s, axis=1)  # get_knns: full argsort of distances (-score) per image
    return {k: _loop_calc_f1(idxs, t, k) for k in ks}


def _loop_calc_f1(idxs: np.ndarray, t: np.ndarray, k: int) -> tuple[float, float, float]:
    """Official ``calc_F1``: per-image loop over ground-truth tags and the top-k list."""
    n_cls = t.shape[1]
    tp, fp, class_samples = np.zeros(n_cls), np.zeros(n_cls), np.zeros(n_cls)
    for i in range(t.shape[0]):
        gt_label = np.flatnonzero(t[i] == 1).tolist()  # one_hot_to_class_labels
        top = idxs[i][:k].tolist()
        for g in gt_label:
            tp[g] += g in top
            class_samples[g] += 1
        for j in top:
            fp[j] += j not in gt_label
    p = tp.sum() / (tp.sum() + fp.sum())
    r = tp.sum() / class_samples.sum()
    f1 = 0.0 if p == 0 or r == 0 else 2 * p * r / (p + r)
    return 100 * p, 100 * r, 100 * f1


# --------------------------------------------------------------------------- timing helpers


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def machine() -> str:
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor() or model
    return f"{model}, {len(os.sched_getaffinity(0))} cores available"


# --------------------------------------------------------------------------- benchmarks


def bench_vs_loop(args: argparse.Namespace) -> None:
    n, c, ks = args.images, args.tags, args.ks
    scores, targets = make_data(n, c, args.seed)
    print(f"## {n:,} images x {c:,} tags (positives {100 * (targets == 1).mean():.2f}%), "
          f"protocol 'sdl', K = {ks}, repeats = {args.repeats}")

    t_ours_map, map_ours = median_time(lambda: mean_average_precision(scores, targets), args.repeats)
    t_ours_prf, prf_ours = median_time(
        lambda: {k: precision_recall_f1_at_k(scores, targets, k) for k in ks}, args.repeats
    )
    unseen = np.arange(c - args.unseen, c)
    t_eval, _ = median_time(
        lambda: evaluate(scores, targets, np.arange(c - args.unseen), unseen, ks), args.repeats
    )

    # Loop mAP: a pilot on a few tags decides between the full loop and a linear extrapolation.
    pilot = min(c, 32)
    t0 = time.perf_counter()
    loop_ap_per_tag(scores, targets, range(pilot))
    est_full = (time.perf_counter() - t0) * c / pilot
    if est_full * args.repeats <= args.loop_budget:
        m_tags = c
    else:
        m_tags = max(pilot, int(c * args.loop_budget / (est_full * args.repeats)))
    t_loop_ap, ap_loop = median_time(lambda: loop_ap_per_tag(scores, targets, range(m_tags)), args.repeats)
    t_loop_map = t_loop_ap * c / m_tags
    ap_ours = average_precision_per_tag(scores, targets)[:m_tags]
    d_ap = float(np.max(np.abs(ap_ours - ap_loop)))

    # Loop F1: per-image loop; same pilot / extrapolation scheme over images.
    pilot_img = min(n, 2000)
    t0 = time.perf_counter()
    loop_calc_f1(scores[:pilot_img], targets[:pilot_img], ks)
    est_full = (time.perf_counter() - t0) * n / pilot_img
    if est_full * args.repeats <= args.loop_budget:
        m_img = n
    else:
        m_img = max(pilot_img, int(n * args.loop_budget / (est_full * args.repeats)))
    t_loop_f1, prf_loop = median_time(
        lambda: loop_calc_f1(scores[:m_img], targets[:m_img], ks), args.repeats
    )
    t_loop_prf = t_loop_f1 * n / m_img
    prf_ref = prf_ours if m_img == n else {
        k: precision_recall_f1_at_k(scores[:m_img], targets[:m_img], k) for k in ks
    }
    d_prf = max(abs(a - b) for k in ks for a, b in zip(prf_ref[k], prf_loop[k], strict=True))

    note_ap = "" if m_tags == c else f" (loop timed on {m_tags} of {c} tags, extrapolated linearly)"
    note_f1 = "" if m_img == n else f" (loop timed on {m_img:,} of {n:,} images, extrapolated linearly)"
    print("| step | vectorised (s) | loop (s) | loop / vectorised | max abs diff (pct points) |")
    print("|---|---|---|---|---|")
    print(f"| mAP{note_ap} | {t_ours_map:.2f} | {t_loop_map:.2f} | {t_loop_map / t_ours_map:.1f}x | {d_ap:.2e} (per-tag AP) |")
    print(f"| P/R/F1@{ks}{note_f1} | {t_ours_prf:.2f} | {t_loop_prf:.2f} | "
          f"{t_loop_prf / t_ours_prf:.1f}x | {d_prf:.2e} |")
    total_o, total_l = t_ours_map + t_ours_prf, t_loop_map + t_loop_prf
    print(f"| total | {total_o:.2f} | {total_l:.2f} | {total_l / total_o:.1f}x | |")
    # Tie-free check: float64 scores of the same first tags have no ties, so the only
    # difference left is the official 1e-8 in the AP denominator.
    m64 = min(c, 32)
    s64 = scores[:, :m64].astype(np.float64) + np.random.default_rng(1).random((n, m64)) * 2**-30
    d64 = float(np.max(np.abs(
        average_precision_per_tag(s64, targets[:, :m64]) - loop_ap_per_tag(s64, targets[:, :m64], range(m64))
    )))
    print("\nAP differences come from ties: random float32 scores tie (24-bit mantissa) and the loop\n"
          "puts later images first among ties (argsort()[::-1]) where sdl.eval.metrics keeps image order.\n"
          f"Tie-free check (float64 scores, {m64} tags): max abs per-tag AP diff {d64:.1e} pct points\n"
          "(the official 1e-8 in the AP denominator).")
    print(f"\nevaluate() ZSL ({args.unseen} unseen) + GZSL ({c} tags), K = {ks}: {t_eval:.2f} s (median)")
    print(f"values: mAP {map_ours:.4f}, " + ", ".join(
        f"P/R/F1@{k} {p:.3f}/{r:.3f}/{f:.3f}" for k, (p, r, f) in prf_ours.items()))


def large_child(args: argparse.Namespace) -> None:
    """Runs in a subprocess so ru_maxrss reflects only this workload."""
    n, c = args.images, args.large_tags
    scores, targets = make_data(n, c, args.seed)
    seen, unseen = np.arange(c - args.large_unseen), np.arange(c - args.large_unseen, c)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_eval, out = median_time(lambda: evaluate(scores, targets, seen, unseen, args.ks), args.large_repeats)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()  # numpy reports its data allocations to tracemalloc
    evaluate(scores, targets, seen, unseen, args.ks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({
        "seconds": t_eval, "input_mb": (scores.nbytes + targets.nbytes) / 2**20,
        "tracemalloc_peak_mb": peak / 2**20, "maxrss_delta_mb": (rss1 - rss0) / 1024,
        "gzsl_map": out["gzsl"]["map"], "zsl_map": out["zsl"]["map"],
    }))


def bench_large(args: argparse.Namespace) -> None:
    cmd = [sys.executable, __file__, "--_large-child", "--images", str(args.images),
           "--large-tags", str(args.large_tags), "--large-unseen", str(args.large_unseen),
           "--large-repeats", str(args.large_repeats), "--seed", str(args.seed),
           "--ks", *map(str, args.ks)]
    res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    print(f"\n## evaluate() at {args.images:,} images x {args.large_tags:,} tags "
          f"(ZSL {args.large_unseen} unseen + GZSL), K = {args.ks}, subprocess")
    print(f"- time: {res['seconds']:.2f} s (median of {args.large_repeats})")
    print(f"- inputs: {res['input_mb']:.0f} MiB (float32 scores + int8 targets)")
    print(f"- peak extra memory: {res['tracemalloc_peak_mb']:.0f} MiB (tracemalloc, numpy allocations), "
          f"{res['maxrss_delta_mb']:.0f} MiB (ru_maxrss increase)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--tags", type=int, default=1006, help="NUS-WIDE GZSL: 925 seen + 81 unseen")
    ap.add_argument("--unseen", type=int, default=81)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--loop-budget", type=float, default=180.0,
                    help="seconds the loop baseline may take per step before it is extrapolated")
    ap.add_argument("--large-tags", type=int, default=7586, help="Open Images: 7,186 seen + 400 unseen")
    ap.add_argument("--large-unseen", type=int, default=400)
    ap.add_argument("--large-repeats", type=int, default=1)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--_large-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._large_child:
        large_child(args)
        return
    print(f"# sdl.eval.metrics benchmark — {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}; numpy {np.__version__}; python {platform.python_version()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    bench_vs_loop(args)
    if not args.skip_large:
        bench_large(args)


if __name__ == "__main__":
    main()
