"""Evaluation end to end, scores included: (N, M, d) matrices -> (N, C) scores -> mAP + F1@K,
ours against the released code's path, same data, same process.

    python benchmarks/bench_evaluation.py                  # 100,000 images x 1,006 tags
    python benchmarks/bench_evaluation.py --images 2000 --repeats 1      # a quick look
    python benchmarks/bench_evaluation.py --device cuda    # our scoring on the GPU

Ours: scores with ``sdl.models.scoring.score_tags`` in batches of ``--batch-size`` images (as
``sdl.eval.inference.compute_scores`` does with the model's output), then ``sdl.eval.metrics``
(``mean_average_precision``, ``precision_recall_f1_at_k``). ``evaluate()`` (ZSL + GZSL) is
timed as well.

Released (Alibaba-MIIL/ZS_SDL ``train.py: validate_multi`` with
``src/helper_functions/helper_functions.py``), re-implemented here: the model's outputs in its
(N, d, M) layout; for F1, ``get_knns(word_vecs, preds)`` = ``get_dist``: per row m a
(N, d) x (d, C) product, the M results concatenated to (N, C, M), max over M, then a full
``argsort`` of every image's C distances; ``calc_F1`` per image (``bench_metrics``' loop, the
image filter of ``get_only_relevant_gt`` as a mask); for mAP, ``get_knns(preds, word_vecs,
for_map=True)``, the same products in (C, N, M) layout, and ``average_precision`` per tag.
GZSL setting: all C tags, K = 3 and 5.

Data: float32 matrices ~ N(0, 0.1^2), l2-normalised random word vectors, int8 targets with
tag prevalence uniform in 1-3 %. Peak memory is the RSS high-water growth of each path
(Linux ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import bench_metrics
import torch

from sdl.eval.metrics import evaluate, mean_average_precision, precision_recall_f1_at_k
from sdl.models.scoring import score_tags


def make_data(n: int, m: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrices = np.empty((n, m, d), dtype=np.float32)
    step = 8192
    for r in range(0, n, step):
        matrices[r : r + step] = rng.standard_normal((min(step, n - r), m, d), dtype=np.float32) * 0.1
    vectors = rng.standard_normal((c, d), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    prevalence = rng.uniform(0.01, 0.03, size=c).astype(np.float32)
    targets = np.empty((n, c), dtype=np.int8)
    for r in range(0, n, step):
        targets[r : r + step] = rng.random((min(step, n - r), c), dtype=np.float32) < prevalence
    return matrices, vectors, targets


# --------------------------------------------------------------------------- ours


def our_scores(matrices: torch.Tensor, vectors: torch.Tensor, batch_size: int) -> np.ndarray:
    """(N, C) scores in batches, as sdl.eval.inference.compute_scores (scores come back to the host)."""
    chunks = [score_tags(matrices[i : i + batch_size], vectors, "max").cpu() for i in range(0, len(matrices), batch_size)]
    return torch.cat(chunks).numpy()


def our_metrics(scores: np.ndarray, targets: np.ndarray, ks: list[int]) -> dict[str, Any]:
    return {"map": mean_average_precision(scores, targets),
            **{k: precision_recall_f1_at_k(scores, targets, k) for k in ks}}


# --------------------------------------------------------------------------- released


def released_get_dist(gallery: np.ndarray, vecs: np.ndarray, k: int = 10, for_map: bool = False):  # type: ignore[no-untyped-def]
    """The released ``get_dist`` (helper_functions.py), as written there."""
    if for_map:
        mat = np.reshape(gallery, (gallery.shape[0], vecs.shape[1], -1))
        k_c = mat.shape[2]
        dot_prod = [np.expand_dims(np.matmul(vecs, mat[:, :, i].transpose(1, 0)), axis=2) for i in range(k_c)]
    else:
        mat = np.reshape(vecs, (vecs.shape[0], gallery.shape[1], -1))
        k_c = mat.shape[2]
        dot_prod = [np.expand_dims(np.matmul(mat[:, :, i], gallery.transpose(1, 0)), axis=2) for i in range(k_c)]
    dist = -np.max(np.concatenate(dot_prod, axis=2), axis=-1)
    if for_map:
        return dist
    ids = np.argsort(dist, axis=1)
    top_k_ids = ids[:, :k]
    top_k_dist = np.take_along_axis(dist, ids, axis=1)[:, :k]
    return top_k_ids, top_k_dist


def released_steps(preds: np.ndarray, word_vecs: np.ndarray, targets: np.ndarray, ks: list[int]):  # type: ignore[no-untyped-def]
    """``validate_multi``'s evaluation in timed pieces; composed they are ``get_knns`` + ``calc_F1``
    and ``get_knns(for_map=True)`` + ``mAP``. Returns {piece: seconds} and the metrics."""
    seconds: dict[str, float] = {}
    keep = (targets == 1).any(axis=1)  # get_only_relevant_gt

    def clock(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - start
        return out

    # F1: get_knns(word_vecs, preds) = get_dist(..., k = C): products, max, full argsort
    mat = np.reshape(preds, (preds.shape[0], word_vecs.shape[1], -1))

    def f1_dist() -> np.ndarray:
        dot_prod = [np.expand_dims(np.matmul(mat[:, :, i], word_vecs.transpose(1, 0)), axis=2) for i in range(mat.shape[2])]
        return -np.max(np.concatenate(dot_prod, axis=2), axis=-1)

    dist = clock("scores, F1 layout", f1_dist)

    def ranking() -> np.ndarray:
        ids = np.argsort(dist, axis=1)
        np.take_along_axis(dist, ids, axis=1)  # top_k_dist, k = C
        return ids

    idxs = clock("argsort", ranking)
    dist = None  # free it (the closure above has run)
    f1 = clock("calc_F1", lambda: {k: bench_metrics._loop_calc_f1(idxs[keep], targets[keep], k) for k in ks})
    idxs = None
    dists = clock("scores, mAP layout", lambda: released_get_dist(preds, word_vecs, for_map=True))

    def ap_loop() -> float:
        scored, targs = dists.transpose()[keep], targets[keep]
        return 100 * float(np.mean([bench_metrics.loop_average_precision(1 - scored[:, k], targs[:, k])
                                    for k in range(targs.shape[1])]))

    map_value = clock("mAP", ap_loop)
    return seconds, f1, map_value


# --------------------------------------------------------------------------- measuring


def timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> tuple[float, float | None, Any]:
    """Median seconds over ``repeats``, peak RSS growth (MiB) of the first run, and the result."""
    times, peak, out = [], None, None
    for i in range(repeats):
        if i == 0:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
            except OSError:
                pass
            base = bench_common.proc_status_kib("VmRSS")
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if i == 0:
            hwm = bench_common.proc_status_kib("VmHWM")
            peak = (hwm - base) / 1024 if hwm is not None and base is not None else None
    return statistics.median(times), peak, out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--tags", type=int, default=1006, help="NUS-WIDE GZSL: 925 seen + 81 unseen")
    parser.add_argument("--unseen", type=int, default=81)
    parser.add_argument("--rows", type=int, default=7)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--batch-size", type=int, default=512, help="scoring batch (evaluate.nus_wide.batch_size)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of our path (median)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where our scores are computed")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    if args.threads:
        torch.set_num_threads(args.threads)

    print(bench_common.header("Evaluation with scores (benchmarks/bench_evaluation.py)"))
    n, c, m, d = args.images, args.tags, args.rows, args.dim
    matrices, vectors, targets = make_data(n, m, d, c, args.seed)
    print(f"{n:,} images x {c:,} tags, M = {m}, d = {d}, positives {100 * (targets == 1).mean():.2f} %, "
          f"K = {args.ks}, our scoring on {device} (threads {torch.get_num_threads()}), batch {args.batch_size}\n",
          flush=True)

    # ours: inputs where sdl.eval.inference has them (the model's output on the device), not timed
    mats_t = torch.from_numpy(matrices).to(device)
    vecs_t = torch.from_numpy(vectors).to(device)
    our_scores(mats_t[: args.batch_size], vecs_t, args.batch_size)  # warm-up
    t_score, mem_score, scores = timed(lambda: our_scores(mats_t, vecs_t, args.batch_size), args.repeats, device)
    t_metrics, mem_metrics, ours = timed(lambda: our_metrics(scores, targets, args.ks), args.repeats, device)
    unseen = np.arange(c - args.unseen, c)
    t_eval, _, _ = timed(lambda: evaluate(scores, targets, np.arange(c - args.unseen), unseen, args.ks), args.repeats, device)
    print(f"ours: scores {t_score:.2f} s, metrics {t_metrics:.2f} s", flush=True)
    mats_t = None  # free the device copy (the closures above have run)

    # released: the model output in its (N, d, M) layout (``x.view(B, 300, -1)``), not timed
    preds = np.ascontiguousarray(matrices.transpose(0, 2, 1)).reshape(n, d * m)
    del matrices
    _, mem_rel, (steps, rel_f1, rel_map) = timed(lambda: released_steps(preds, vectors, targets, args.ks), 1, torch.device("cpu"))
    t_rel_scores = steps["scores, F1 layout"] + steps["scores, mAP layout"]
    t_rel = sum(steps.values())
    print("released: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()), flush=True)
    rel_scores = -released_get_dist(preds[:2000], vectors, for_map=True).T  # agreement check on 2,000 images
    score_diff = float(np.abs(rel_scores - scores[:2000]).max())

    t_ours = t_score + t_metrics
    rows = [
        ["scores (N, C)", f"{t_score:.2f}", f"{t_rel_scores:.2f} (2 passes: F1 and mAP layouts)", f"{t_rel_scores / t_score:.1f}x",
         f"{score_diff:.1e} (max abs score)"],
        ["mAP + P/R/F1@" + ",".join(map(str, args.ks)) + " from scores", f"{t_metrics:.2f}",
         f"{t_rel - t_rel_scores:.2f} (argsort, per-tag AP, per-image F1)", f"{(t_rel - t_rel_scores) / t_metrics:.1f}x",
         f"mAP {abs(ours['map'] - rel_map):.1e} pt; F1 " +
         f"{max(abs(ours[k][2] - rel_f1[k][2]) for k in args.ks):.1e} pt"],
        ["total", f"{t_ours:.2f}", f"{t_rel:.2f}", f"{t_rel / t_ours:.1f}x", ""],
    ]
    print("\n" + bench_common.markdown_table(["step", "ours (s)", "released (s)", "released / ours", "max abs diff"], rows))
    print(f"\npeak RSS growth: ours scores {mem_score or 0:.0f} MiB (the (N, C) scores: {n * c * 4 / 2**20:.0f} MiB), "
          f"metrics {mem_metrics or 0:.0f} MiB; released {mem_rel or 0:.0f} MiB (its (N, C, M) products and their "
          f"concatenation: {2 * n * c * m * 4 / 2**20:.0f} MiB)")
    print(f"evaluate() (ZSL {args.unseen} unseen + GZSL {c} tags) from the scores: {t_eval:.2f} s")
    print(f"values: ours mAP {ours['map']:.4f}, released {rel_map:.4f}; "
          + ", ".join(f"F1@{k} ours {ours[k][2]:.4f} released {rel_f1[k][2]:.4f}" for k in args.ks))
    print("released steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    return {"ours": {"scores": t_score, "metrics": t_metrics}, "released": {"scores": t_rel_scores, "total": t_rel},
            "score_diff": score_diff}


if __name__ == "__main__":
    main()
