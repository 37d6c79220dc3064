"""Training throughput at the paper's NUS-WIDE setting: SDL head + loss vs a BCE head vs the
forward pass, on synthetic tensors and fed by the real data path.

    python benchmarks/gpu_train_bench.py                      # on a GPU: ~2-4 minutes
    python benchmarks/gpu_train_bench.py --device cpu --steps 2 --batch-size 4 --image-size 64

Setting (paper, section 4.1; params.yaml ``train.nus_wide``): TResNet-M (timm ``tresnet_m``,
random weights: speed does not depend on them), M = 7, d = 300, C = 925 seen tags, batch 192,
224 px, Adam (fused on CUDA), bf16 autocast where supported (fp16 + gradient scaler
otherwise), channels_last. Each training step is the one ``sdl.training.loop`` runs: forward,
loss in float32, backward, optimiser step.

Measured, each after ``--warmup`` steps, over ``--steps`` steps timed with CUDA events (host
clock on the CPU):

- ``sdl``: the SDL model (``sdl.models.create_model``) and ``sdl.losses`` SDL loss
  (paper variant, lambda 0.3) over 925 tag vectors, on CUDA with ``max_positives`` as
  ``sdl.training.loop`` gives it (fixed shapes, no host sync in the step);
- ``sdl_sized`` (synthetic only): the same with the loss sized from each batch, which reads
  the positive counts back to the host once a step: what that synchronisation costs;
- ``bce``: the same backbone with a plain multi-label head, Linear(2048, 925) +
  BCEWithLogits;
- ``forward``: the SDL model's forward pass alone (inference mode, eval BatchNorm);

- ``epsilon`` (synthetic, on CUDA, where the Epsilon family is in this checkout): Epsilon's step,
  ViT-B/16 at 224 px, random weights, frozen backbone, batch ``--epsilon-batch`` (96);

first on ``synthetic`` tensors already on the device (random images, 1-15 positives per
image), then on the ``real`` data path (``train.<d>.data_path: jpeg``): a generated
pre-resized JPEG cache (short side 256, as the ``download`` stage's ``cache_short_side``) read
through ``TaggedImageDataset`` (paper augmentation: flips, cutout, RandAugment) and a
DataLoader with ``--workers`` persistent, pinned-memory workers, copied to the device on a
side stream as ``sdl.training.loop`` does; then on ``real_cache`` (``data_path:
uint8_cache``): the same JPEGs decoded once into ``sdl.data.decoded_cache`` (the build is
timed), read through ``DecodedImageDataset`` (the same augmentation on uint8 tensors), moved
as uint8 and normalised on the device by ``device_batches``. Each loader alone (no model) is
timed too. Prints a Markdown table of images/s, the ratios SDL/BCE (target >= 0.95) and
real/synthetic for both data paths (target >= 0.9), and writes JSON to ``--json`` or
``$OUT/gpu_train_bench.json`` when ``$OUT`` is set.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from sdl._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()
import timm  # noqa: E402

from sdl.data.dataset import AugmentConfig, TaggedImageDataset  # noqa: E402
from sdl.data.decoded_cache import ensure_decoded_cache  # noqa: E402
from sdl.data.decoded_dataset import DecodedImageDataset  # noqa: E402
from sdl.losses import create_loss  # noqa: E402
from sdl.models import create_model  # noqa: E402
from sdl.training.device import device_batches  # noqa: E402
from sdl.training.loop import parameter_groups  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda or cpu")
    parser.add_argument("--backbone", default="tresnet_m")
    parser.add_argument("--batch-size", type=int, default=192)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rows", type=int, default=7, help="M")
    parser.add_argument("--dim", type=int, default=300, help="d, the word-vector size")
    parser.add_argument("--tags", type=int, default=925, help="C, seen tags")
    parser.add_argument("--max-positives", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 on CUDA, 1 on CPU)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: CPU cores - 1, at most 16)")
    parser.add_argument("--prefetch-factor", type=int, default=2)
    parser.add_argument("--cache-images", type=int, default=None,
                        help="JPEGs in the generated cache (default 4096 on CUDA, 2 batches on CPU)")
    parser.add_argument("--cache-dir", default=None, help="reuse / keep the generated cache here")
    parser.add_argument("--cache-short-side", type=int, default=None, help="default: 256 * image size / 224")
    parser.add_argument("--no-randaugment", action="store_true", help="flips and cutout only")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models (adds compile time)")
    parser.add_argument("--only", nargs="+", choices=("synthetic", "real", "real_cache"),
                        default=["synthetic", "real", "real_cache"])
    parser.add_argument("--epsilon-backbone", default="vit_base_patch16_224")
    parser.add_argument("--epsilon-batch", type=int, default=96)
    parser.add_argument("--epsilon-rows", type=int, default=8)
    parser.add_argument("--json", default=None, help="write the results here (default: $OUT/gpu_train_bench.json)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- models and steps


class BCEModel(nn.Module):
    """The SDL model's backbone with a plain multi-label head: logits over the C seen tags."""

    def __init__(self, backbone: str, tags: int) -> None:
        super().__init__()
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.head = nn.Linear(self.backbone.num_features, tags)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class Timer:
    """CUDA events on the GPU (the device's own timeline), the host clock on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @contextlib.contextmanager
    def measure(self, result: dict[str, float]) -> Iterator[None]:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)
            start.record()
            yield
            end.record()
            torch.cuda.synchronize(self.device)
            result["seconds"] = start.elapsed_time(end) / 1e3
        else:
            begin = time.perf_counter()
            yield
            result["seconds"] = time.perf_counter() - begin


def amp_setting(device: torch.device, choice: str) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler, str]:
    if device.type != "cuda" or choice == "off":
        return contextlib.nullcontext(), torch.amp.GradScaler("cuda", enabled=False), "off"
    if choice == "bf16" or (choice == "auto" and torch.cuda.is_bf16_supported()):
        return torch.autocast("cuda", dtype=torch.bfloat16), torch.amp.GradScaler("cuda", enabled=False), "bf16"
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda", enabled=True), "fp16"


def build(kind: str, args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, Callable]:
    """The model and one step function ``step(images, targets)`` for ``kind``."""
    autocast, scaler, _ = amp_setting(device, args.amp)
    if kind == "bce":
        model: nn.Module = BCEModel(args.backbone, args.tags)
    elif kind == "epsilon":
        model = create_model(args.epsilon_backbone, args.epsilon_rows, args.dim, pretrained=False,  # type: ignore[call-arg]
                             image_size=args.image_size, family="epsilon")
    else:
        model = create_model(args.backbone, args.rows, args.dim, pretrained=False, image_size=args.image_size)
    model = model.to(device)
    if not args.no_channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if args.compile else model

    if kind == "forward":
        model.eval()

        @torch.inference_mode()
        def forward_step(images: torch.Tensor, targets: torch.Tensor) -> None:
            with autocast:
                run(images)

        return model, forward_step

    model.train()
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(parameter_groups(model, 3e-4), lr=1e-4, **fused)
    if kind in ("sdl", "sdl_sized", "epsilon"):
        vectors = torch.nn.functional.normalize(
            torch.randn(args.tags, args.dim, generator=torch.Generator().manual_seed(1)), dim=1
        ).to(device)
        # As sdl.training.loop: on CUDA the training set's largest label count bounds the positives.
        bound = {"max_positives": args.max_positives} if kind != "sdl_sized" and device.type == "cuda" else {}
        sdl = create_loss("sdl", reg_lambda=0.3, variant="paper", reduction="max", **bound)

        def loss_fn(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return sdl(output.float(), vectors, targets)  # float32, as sdl.training.loop
    else:
        bce = nn.BCEWithLogitsLoss()

        def loss_fn(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return bce(output.float(), targets)

    def train_step(images: torch.Tensor, targets: torch.Tensor) -> None:
        with autocast:
            output = run(images)
        loss = loss_fn(output, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return model, train_step


# --------------------------------------------------------------------------- data


def synthetic_batches(args: argparse.Namespace, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    memory_format = torch.contiguous_format if args.no_channels_last else torch.channels_last
    generator = torch.Generator().manual_seed(0)
    batches = []
    for i in range(2):  # alternate two batches: the step must read fresh images from memory
        images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator)
        targets = torch.from_numpy(bench_common.random_targets(args.batch_size, args.tags, args.max_positives, seed=i))
        batches.append((images.to(device).contiguous(memory_format=memory_format), targets.to(device)))
    return itertools.cycle(batches)


def mean_std(args: argparse.Namespace) -> tuple[tuple[float, ...], tuple[float, ...]]:
    config = create_model(args.backbone, 1, 1, pretrained=False, image_size=args.image_size).config
    return tuple(config.mean), tuple(config.std)


def real_dataset(args: argparse.Namespace, cache: list[Path], decoded: Any = None) -> torch.utils.data.Dataset:
    """The JPEG path's training set over ``cache``, or with ``decoded`` the uint8 cache's."""
    targets = bench_common.random_targets(len(cache), args.tags, args.max_positives, seed=2)
    augment = AugmentConfig(hflip=True, cutout_p=0.5, cutout_factor=0.5, randaugment=not args.no_randaugment)
    if decoded is not None:
        return DecodedImageDataset(decoded, targets, augment=augment, seed=0)
    mean, std = mean_std(args)
    return TaggedImageDataset(cache, targets, args.image_size, mean, std, augment=augment, seed=0)


def real_loader(args: argparse.Namespace, device: torch.device, dataset: torch.utils.data.Dataset) -> DataLoader:
    workers = args.workers
    return DataLoader(
        dataset, batch_size=args.batch_size, sampler=RandomSampler(dataset, replacement=True, num_samples=10**9),
        drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=args.prefetch_factor if workers > 0 else None,
    )


def real_batches(loader: DataLoader, args: argparse.Namespace, device: torch.device) -> Iterator:
    # sdl.training.loop's copy path; uint8 batches (the decoded cache) are normalised on the device
    return device_batches(loader, device, not args.no_channels_last, mean_std(args))


# --------------------------------------------------------------------------- measuring


def measure(step: Callable, batches: Iterator, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    for _ in range(args.warmup):
        step(*next(batches))
    result: dict[str, float] = {}
    images = 0
    with Timer(device).measure(result):
        for _ in range(args.steps):
            batch = next(batches)
            images += len(batch[0])
            step(*batch)
    seconds = result["seconds"]
    return {"images_per_second": images / seconds, "ms_per_step": 1e3 * seconds / args.steps}


def measure_loader(loader_iter: Iterator, args: argparse.Namespace) -> dict[str, float]:
    for _ in range(min(args.warmup, 2)):
        next(loader_iter)
    begin = time.perf_counter()
    for _ in range(args.steps):
        next(loader_iter)
    seconds = time.perf_counter() - begin
    return {"images_per_second": args.steps * args.batch_size / seconds, "ms_per_step": 1e3 * seconds / args.steps}


def epsilon_available() -> bool:
    """Whether this checkout has the Epsilon model family (``create_model(..., family=...)``)."""
    import inspect

    return "family" in inspect.signature(create_model).parameters


def measure_synthetic(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    batches = synthetic_batches(args, device)
    with_epsilon = epsilon_available() and device.type == "cuda"  # ViT-B/16 at 224 px: a GPU figure
    kinds = ["sdl", "sdl_sized", "bce", "forward"] + (["epsilon"] if with_epsilon else [])
    for kind in kinds:
        model, step = build(kind, args, device)
        source = batches
        if kind == "epsilon":  # its own batch size: the first images and targets of each batch
            source = ((images[: args.epsilon_batch], targets[: args.epsilon_batch]) for images, targets in batches)
        out[kind] = measure(step, source, args, device)
        print(f"synthetic {kind}: {out[kind]['images_per_second']:.4g} images/s", flush=True)
        del model, step
        release(device)
    if "epsilon" not in out:
        print("synthetic epsilon: not measured (" + ("no Epsilon model family in this checkout" if not epsilon_available()
              else "a GPU figure: CUDA only") + ")", flush=True)
    del batches
    release(device)
    return out


def measure_real(name: str, dataset: torch.utils.data.Dataset, kinds: tuple[str, ...], args: argparse.Namespace,
                 device: torch.device) -> dict[str, dict[str, float]]:
    """The loader alone, then each step kind fed by it (through device_batches)."""
    loader = real_loader(args, device, dataset)
    loader_iter = iter(loader)
    out = {"loader": measure_loader(loader_iter, args)}
    print(f"{name} loader alone: {out['loader']['images_per_second']:.0f} images/s", flush=True)
    batches = real_batches(loader_iter, args, device)
    for kind in kinds:
        model, step = build(kind, args, device)
        out[kind] = measure(step, batches, args, device)
        print(f"{name} {kind}: {out[kind]['images_per_second']:.4g} images/s", flush=True)
        del model, step
        release(device)
    batches.close()
    del loader_iter, loader
    return out


def release(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 1)
    if args.workers is None:
        args.workers = max(1, min(16, (os.cpu_count() or 2) - 1))
    if args.cache_images is None:
        args.cache_images = 4096 if device.type == "cuda" else 2 * args.batch_size
    short_side = args.cache_short_side or round(256 * args.image_size / 224)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    _, _, amp_name = amp_setting(device, args.amp)
    torch.manual_seed(0)

    print(bench_common.header("Training throughput (benchmarks/gpu_train_bench.py)"))
    print(f"setting: {args.backbone}, batch {args.batch_size}, {args.image_size} px, M = {args.rows}, d = {args.dim}, "
          f"C = {args.tags}, amp {amp_name}, channels_last {not args.no_channels_last}, compile {args.compile}, "
          f"warm-up {args.warmup} + {args.steps} timed steps, loader workers {args.workers}\n", flush=True)

    results: dict[str, dict[str, dict[str, float]]] = {}
    if "synthetic" in args.only:
        results["synthetic"] = measure_synthetic(args, device)
    cache_info: dict[str, Any] = {}
    if {"real", "real_cache"} & set(args.only):
        with contextlib.ExitStack() as stack:
            folder = Path(args.cache_dir) if args.cache_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            begin = time.perf_counter()
            cache = bench_common.make_jpeg_cache(folder / "jpeg", args.cache_images, short_side)
            sizes = [p.stat().st_size for p in cache]
            cache_info = {"images": len(cache), "short_side": short_side, "mean_kib": float(np.mean(sizes)) / 1024,
                          "seconds_to_build": time.perf_counter() - begin}
            print(f"JPEG cache: {len(cache)} images, short side {short_side}, mean {cache_info['mean_kib']:.1f} KiB, "
                  f"built in {cache_info['seconds_to_build']:.1f} s", flush=True)
            if "real" in args.only:
                results["real"] = measure_real("real", real_dataset(args, cache), ("sdl", "bce", "forward"), args, device)
            if "real_cache" in args.only:
                begin = time.perf_counter()
                decoded = ensure_decoded_cache(cache, folder / "decoded", args.image_size, workers=os.cpu_count() or 1)
                cache_info["decoded_seconds_to_build"] = time.perf_counter() - begin
                cache_info["decoded_images_per_second"] = len(cache) / cache_info["decoded_seconds_to_build"]
                print(f"decoded uint8 cache at {args.image_size} px built at "
                      f"{cache_info['decoded_images_per_second']:.0f} images/s ({os.cpu_count()} threads)", flush=True)
                dataset = real_dataset(args, cache, decoded)
                results["real_cache"] = measure_real("real_cache", dataset, ("sdl",), args, device)

    summary = report(results, args)
    payload = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else bench_common.machine(),
        "torch": torch.__version__, "timm": timm.__version__, "amp": amp_name, "args": vars(args),
        "cache": cache_info, "results": results, "ratios": summary,
        "cpu": bench_common.machine(),
    }
    target = args.json or (str(Path(os.environ["OUT"]) / "gpu_train_bench.json") if os.environ.get("OUT") else None)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(payload, indent=2, default=str))
        print(f"\nwrote {target}")
    return payload


def report(results: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> dict[str, float]:
    rows = []
    for data, by_kind in results.items():
        for kind, numbers in by_kind.items():
            value = numbers["images_per_second"]
            rows.append([data, kind, f"{value:.0f}" if value >= 100 else f"{value:.3g}", f"{numbers['ms_per_step']:.1f}"])
    print("\n" + bench_common.markdown_table(["data", "measured", "images/s", "ms per step"], rows))
    ratios: dict[str, float] = {}

    def rate(data: str, kind: str) -> float | None:
        return results.get(data, {}).get(kind, {}).get("images_per_second")

    lines = []
    for data in results:
        sdl, bce = rate(data, "sdl"), rate(data, "bce")
        if sdl and bce:
            ratios[f"sdl_over_bce_{data}"] = sdl / bce
            lines.append(f"- SDL / BCE ({data}): {sdl / bce:.3f} (target >= 0.95)")
    sized, fixed = rate("synthetic", "sdl_sized"), rate("synthetic", "sdl")
    if sized and fixed:
        ratios["sdl_over_sdl_sized_synthetic"] = fixed / sized
        lines.append(f"- SDL loss with fixed shapes / sized from each batch (synthetic): {fixed / sized:.3f}")
    for data in ("real", "real_cache"):
        for kind in ("sdl", "bce", "forward"):
            real, synthetic = rate(data, kind), rate("synthetic", kind)
            if real and synthetic:
                ratios[f"{data}_over_synthetic_{kind}"] = real / synthetic
                lines.append(f"- {data} / synthetic ({kind}): {real / synthetic:.3f}" + (" (target >= 0.9)" if kind == "sdl" else ""))
    epsilon, sdl_rate = rate("synthetic", "epsilon"), rate("synthetic", "sdl")
    if epsilon and sdl_rate:
        ratios["epsilon_over_sdl_synthetic"] = epsilon / sdl_rate
        lines.append(f"- Epsilon ({args.epsilon_backbone}, batch {args.epsilon_batch}) / SDL ({args.backbone}, "
                     f"batch {args.batch_size}), images/s (synthetic): {epsilon / sdl_rate:.3f}")
    if lines:
        print("\n" + "\n".join(lines))
    return ratios


if __name__ == "__main__":
    main()
