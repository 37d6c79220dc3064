"""Benchmark: vectorised ``sdl_loss`` vs a per-image loop like the released SDL code.

    python benchmarks/bench_loss.py [--device cpu|cuda] [--repeats N]

Times forward + backward at Open Images size (B=96, C=7,186, M=7, d=300, 1-30 positives per
image) and NUS-WIDE size (B=192, C=925, 1-15 positives). The loop reproduces the released
computation (official variant): scores by max over rows, a Python loop over images,
softplus of (negative - positive) pairs / |P|, SDW, row-variance regulariser, x2. Both sides
score with ``sdl.models.scoring.score_tags`` (one matmul); "scoring alone" times that shared part, and
"loss-only speed-up" is (loop - scoring) / (ours - scoring). ``--release-scores`` also times
the loop with the released code's broadcast-multiply scoring. Every image has at least one
positive (the released code gives NaN otherwise). Peak memory on CPU is the RSS high-water
growth of one forward + backward in a fresh process. Prints a Markdown table, then a second
one: our two forms of the loss side by side, sized from the batch (one host sync) and with
fixed slots (``max_positives`` = the case's largest label count: no host sync, more padding).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common

from sdl.losses import sdl_loss
from sdl.losses.pairwise import default_pair_budget
from sdl.models.scoring import score_tags

REG_LAMBDA = 0.3


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    tags: int
    rows: int
    dim: int
    max_pos: int
    max_unknown: int


CASES = (
    Case("Open Images", 96, 7186, 7, 300, 30, 10),
    Case("NUS-WIDE", 192, 925, 7, 300, 15, 0),
)


def make_inputs(case: Case, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    matrices = torch.randn(case.batch, case.rows, case.dim, generator=gen) * 0.1
    vectors = torch.nn.functional.normalize(torch.randn(case.tags, case.dim, generator=gen), dim=1)
    targets = torch.zeros(case.batch, case.tags, dtype=torch.long)
    for b in range(case.batch):  # setup only, not timed
        perm = torch.randperm(case.tags, generator=gen)
        n_pos = int(torch.randint(1, case.max_pos + 1, (1,), generator=gen))
        n_unk = int(torch.randint(0, case.max_unknown + 1, (1,), generator=gen))
        targets[b, perm[:n_pos]] = 1
        targets[b, perm[n_pos : n_pos + n_unk]] = -1  # "unknown": a negative, as released
    return matrices.to(device), vectors.to(device), targets.to(device)


def released_style_loss(matrices: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The released SDL loss's computation, written afresh: a Python loop over images."""
    # Same scoring as sdl_loss (the released code's max over rows), so the ratio is the loss's.
    scores = score_tags(matrices, vectors, "max")
    return _released_loop(scores, matrices, vectors, targets)


def released_scores_loss(matrices: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """As above, with the released scoring: per row, broadcast-multiply (B, d, C) then sum."""
    wordvecs = vectors.t().unsqueeze(0)  # (1, d, C)
    per_row = [(matrices[:, m, :].unsqueeze(2) * wordvecs).sum(dim=1) for m in range(matrices.shape[1])]
    scores = torch.stack(per_row, dim=2).max(dim=-1).values
    return _released_loop(scores, matrices, vectors, targets)


def _released_loop(
    scores: torch.Tensor, matrices: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    per_image = []
    for i in range(targets.shape[0]):
        pos_mask = targets[i] == 1
        pos = scores[i, pos_mask]
        neg = scores[i, (1 - targets[i]).bool()]  # 0 and -1 are negatives
        v = neg.unsqueeze(0) - pos.unsqueeze(1) if len(neg) else -pos.unsqueeze(1)
        rel = vectors[pos_mask]
        total_var = rel.var(dim=0).sum() if rel.shape[0] > 1 else rel.new_zeros(())
        rank = (1 + total_var) * torch.log(1 + torch.exp(v)).sum() / pos.shape[0]
        reg = matrices[i].var(dim=0).sum()
        per_image.append(2 * ((1 - REG_LAMBDA) * rank + REG_LAMBDA * reg))
    return torch.stack(per_image).mean()


def scoring_only(matrices: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The part both sides share: scores by max over rows, forward + backward."""
    return score_tags(matrices, vectors, "max").sum()


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ours(budget: int, max_positives: int | None = None) -> LossFn:
    def run(matrices: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sdl_loss(
            matrices, vectors, targets, REG_LAMBDA, "official", max_pair_elements=budget, max_positives=max_positives
        )

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(fn: Callable, matrices: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor) -> tuple[float, torch.Tensor]:
    leaf = matrices.detach().requires_grad_()
    loss = fn(leaf, vectors, targets)
    loss.backward()
    return loss.item(), leaf.grad  # .item() synchronises


def time_fns(fns: dict[str, Callable], inputs: tuple, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of forward + backward per function; rounds interleave the functions so a
    change of load on a shared machine hits them alike."""
    for fn in fns.values():
        step(fn, *inputs)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            step(fn, *inputs)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


IMPLS: dict[str, Callable[[int], Callable]] = {
    "ours": ours,
    "loop": lambda budget: released_style_loss,
    "scoring": lambda budget: scoring_only,
}


def peak_memory_mib(impl: str, case: Case, budget: int, device: torch.device) -> tuple[float, str]:
    """Extra peak memory of one forward + backward, in MiB, and how it was measured."""
    if device.type == "cuda":
        inputs = make_inputs(case, device)
        fn = IMPLS[impl](budget)
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step(fn, *inputs)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, "torch.cuda.max_memory_allocated growth"
    # CPU: a fresh process per measurement, so memory freed by earlier runs cannot hide the peak.
    out = subprocess.run(
        [sys.executable, __file__, "--_memory-child", impl, case.name, str(budget)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return float(out[0]), out[1].replace("_", " ")


def _memory_child(impl: str, case_name: str, budget: int) -> None:
    case = next(c for c in CASES if c.name == case_name)
    inputs = make_inputs(case, torch.device("cpu"))
    fn = IMPLS[impl](budget)
    torch.matmul(inputs[0][:1], inputs[1].t())  # load the BLAS kernels outside the measurement
    try:
        # Writing 5 to clear_refs resets the RSS high-water mark (Linux): VmHWM - VmRSS is this step's.
        Path("/proc/self/clear_refs").write_text("5")
        base = bench_common.proc_status_kib("VmRSS")
        step(fn, *inputs)
        peak = bench_common.proc_status_kib("VmHWM")
        if base is not None and peak is not None:
            print((peak - base) / 1024, "RSS_high-water_growth")
            return
    except OSError:
        pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step(fn, *inputs)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "ru_maxrss_growth_(lower_bound)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-pair-elements", type=int, default=None, help="default: the device's default")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--release-scores", action="store_true", help="also time the released broadcast scoring")
    parser.add_argument("--_memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        impl, case_name, budget = args._memory_child
        _memory_child(impl, case_name, int(budget))
        return
    device = torch.device(args.device)
    if args.max_pair_elements is None:
        args.max_pair_elements = default_pair_budget(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    torch.manual_seed(0)

    cpu = platform.processor() or platform.machine()
    if device.type == "cuda":
        cpu = torch.cuda.get_device_name(device)
    print(
        f"torch {torch.__version__}, device {device} ({cpu}), threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, repeats {args.repeats}, max_pair_elements {args.max_pair_elements}\n"
    )
    header = (
        "| case | B | C | M | d | mean pos | loop (ms) | ours (ms) | speed-up | scoring alone (ms) "
        "| loss-only speed-up | rel. value diff | max grad diff | ours peak (MiB) | loop peak (MiB) "
        "| scoring alone peak (MiB) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    extra_rows, form_rows = [], []
    for case in CASES:
        inputs = make_inputs(case, device)
        mean_pos = (inputs[2] == 1).sum(dim=1).double().mean().item()
        ours_fn = ours(args.max_pair_elements)
        ref_value, ref_grad = step(released_style_loss, *inputs)
        our_value, our_grad = step(ours_fn, *inputs)
        rel_diff = abs(our_value - ref_value) / abs(ref_value)
        grad_diff = (our_grad - ref_grad).abs().max().item()
        fixed_fn = ours(args.max_pair_elements, max_positives=case.max_pos)
        fixed_value, fixed_grad = step(fixed_fn, *inputs)
        fixed_diff = abs(fixed_value - our_value) / abs(our_value)
        fixed_grad_diff = (fixed_grad - our_grad).abs().max().item()
        fns = {"loop": released_style_loss, "ours": ours_fn, "fixed": fixed_fn, "scoring": scoring_only}
        if args.release_scores:
            fns["release"] = released_scores_loss
        medians = time_fns(fns, inputs, args.repeats, device)
        t_loop, t_ours, t_score = medians["loop"], medians["ours"], medians["scoring"]
        loss_only = (t_loop - t_score) / max(t_ours - t_score, 1e-9)
        mem_ours, how = peak_memory_mib("ours", case, args.max_pair_elements, device)
        mem_loop, _ = peak_memory_mib("loop", case, args.max_pair_elements, device)
        mem_score, _ = peak_memory_mib("scoring", case, args.max_pair_elements, device)
        print(
            f"| {case.name} | {case.batch} | {case.tags} | {case.rows} | {case.dim} | {mean_pos:.1f} "
            f"| {t_loop * 1e3:.1f} | {t_ours * 1e3:.1f} | {t_loop / t_ours:.1f}x | {t_score * 1e3:.1f} "
            f"| {loss_only:.1f}x | {rel_diff:.1e} "
            f"| {grad_diff:.1e} | {mem_ours:.0f} | {mem_loop:.0f} | {mem_score:.0f} |"
        )
        t_fixed = medians["fixed"]
        form_rows.append(
            f"| {case.name} | {case.max_pos} | {t_ours * 1e3:.1f} | {t_fixed * 1e3:.1f} | {t_fixed / t_ours:.2f} "
            f"| {t_loop / t_fixed:.1f}x | {fixed_diff:.1e} | {fixed_grad_diff:.1e} |"
        )
        if args.release_scores:
            t_rel = medians["release"]
            extra_rows.append(f"| {case.name} | {t_rel * 1e3:.0f} | {t_ours * 1e3:.1f} | {t_rel / t_ours:.1f}x |")
    budget_mib = 2 * args.max_pair_elements * 4 / 2**20
    per_case = ", ".join(f"{c.name}: {8 * c.batch * c.tags * 4 / 2**20:.0f} MiB" for c in CASES)
    print(f"\nours, analytic working set beyond the scoring: 2 pair blocks = {budget_mib:.0f} MiB "
          f"+ about 8 (B, C) float32 tensors ({per_case})")
    print(f"peak memory: {how}; dense (B, C, C) float32 pairs at Open Images size would be "
          f"{96 * 7186 * 7186 * 4 / 2**30:.1f} GiB")
    print(
        "\n| case | max_positives | ours, sized from the batch (ms) | ours, fixed slots (ms) | fixed / sized "
        "| loop / fixed | rel. value diff | max grad diff |\n|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(form_rows))
    if extra_rows:
        print("\n| case | loop + released broadcast scoring (ms) | ours (ms) | speed-up |\n|---|---|---|---|")
        print("\n".join(extra_rows))


if __name__ == "__main__":
    main()
