"""Data loader throughput: the JPEG path against the decoded uint8 cache, per CPU core and per
worker, against the GPU step rate they must feed.

    nice -n 10 python benchmarks/bench_loader.py [--workers 0 1 2] [--images 640] [--batch-size 32]

Side by side in one run, the two training data paths (``train.<d>.data_path``) at 224 px:

- ``jpeg``: ``sdl.data.dataset.TaggedImageDataset`` over a generated JPEG cache at short side
  256 (what the ``download`` stage's ``cache_short_side: 256`` writes for the paper's
  datasets): decode, resize to 224, PIL augmentation, normalise;
- ``uint8``: ``sdl.data.decoded_dataset.DecodedImageDataset`` over the decoded cache of the same
  JPEGs (``sdl.data.decoded_cache``, built here first and timed): a read from the
  memory-mapped file, the augmentation on uint8 tensors, and (here, on the CPU, to count its
  cost) the normalisation that training does on the GPU;

each with flips + cutout, and with RandAugment added (the paper's augmentation), plus the real
embedded images (64 px PNG mosaics at 128 px, flips + cutout) when they are there.

Measured: per core, the main process alone on one thread (items, batching, normalisation),
as images per second of its own CPU time (``time.process_time``: on a shared machine the
wall clock counts other jobs' time too) and of the wall clock; then DataLoaders with 0, 1, 2
workers (wall clock, first batch not timed). Then the workers a GPU needs at the issue's
*stated* TResNet-M rate on an H200 (about 3,500 images/s; ``--gpu-rate``), NOT a measurement,
for each path.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate

from sdl.data.dataset import AugmentConfig, TaggedImageDataset
from sdl.data.decoded_cache import ensure_decoded_cache
from sdl.data.decoded_dataset import DecodedImageDataset
from sdl.data.tensor_augment import Normalizer

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PAPER_BATCHES = {"nus_wide": 192, "coco": 32, "open_images": 96}  # params.yaml train.<dataset>.batch_size
FLIP_CUTOUT = AugmentConfig(hflip=True, cutout_p=0.5)
PAPER = AugmentConfig(hflip=True, cutout_p=0.5, randaugment=True)
TARGET_PER_CORE = 250.0  # the issue's: 3,500 images/s from 16 cores (15 loader workers and a main process)


def _finish(batch: tuple[torch.Tensor, torch.Tensor], normalizer: Normalizer) -> torch.Tensor:
    images = batch[0]
    return normalizer(images) if images.dtype == torch.uint8 else images


def per_core(dataset: Dataset, images: int, batch_size: int) -> dict[str, float]:
    """One process, one thread: items in a random order, batched and normalised as training
    does; images per CPU-second and per wall-second."""
    order = np.random.default_rng(0).integers(0, len(dataset), size=images + batch_size)  # type: ignore[arg-type]
    normalizer = Normalizer(IMAGENET_MEAN, IMAGENET_STD)
    _finish(default_collate([dataset[int(i)] for i in order[:batch_size]]), normalizer)  # warm-up (tables, maps)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(batch_size, batch_size + images, batch_size):
        _finish(default_collate([dataset[int(i)] for i in order[start : start + batch_size]]), normalizer)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"cpu": images / cpu, "wall": images / wall}


def loader_rate(dataset: Dataset, workers: int, batch_size: int, images: int) -> float:
    """Images/s of a DataLoader over ``images`` images after its first batch (normalised in the
    main process for the uint8 path, as device_batches does on a CPU device)."""
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, drop_last=True,
        sampler=RandomSampler(dataset, replacement=True, num_samples=images + batch_size,
                              generator=torch.Generator().manual_seed(0)),
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )
    normalizer = Normalizer(IMAGENET_MEAN, IMAGENET_STD)
    iterator = iter(loader)
    _finish(next(iterator), normalizer)  # start-up: workers fork and fill their queues
    begin = time.perf_counter()
    count = 0
    for batch in iterator:
        _finish(batch, normalizer)
        count += len(batch[0])
    return count / (time.perf_counter() - begin)


def build_sets(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Dataset], dict[str, float]]:
    """The datasets to measure, and the JPEG and decoded caches' facts."""
    sets: dict[str, Dataset] = {}
    embedded = sorted(Path(args.embedded).glob("*.png"))
    if embedded:
        sets["embedded 64 px PNG -> 128, flip + cutout"] = TaggedImageDataset(
            embedded, np.zeros((len(embedded), 1), np.float32), 128, IMAGENET_MEAN, IMAGENET_STD, augment=FLIP_CUTOUT)
    else:
        print(f"(no embedded images under {args.embedded}: run `dvc repro download@embedded`)")
    jpegs = bench_common.make_jpeg_cache(folder / "jpeg", args.cache_images, 256)
    begin, cpu = time.perf_counter(), time.process_time()
    cache = ensure_decoded_cache(jpegs, folder / "decoded", 224, workers=args.build_threads)
    built = {"seconds": time.perf_counter() - begin, "cpu_seconds": time.process_time() - cpu}
    facts = {"jpeg_mean_kib": float(np.mean([p.stat().st_size for p in jpegs])) / 1024, "images": len(jpegs),
             "build_images_per_second": len(jpegs) / built["seconds"],
             "build_images_per_cpu_second": len(jpegs) / built["cpu_seconds"]}
    targets = np.zeros((len(jpegs), 1), np.float32)
    for name, augment in (("flip + cutout", FLIP_CUTOUT), ("flip + cutout + RandAugment (paper)", PAPER)):
        if augment.randaugment or not args.skip_randaugment_off:
            sets[f"jpeg: JPEG 256 -> 224, {name}"] = TaggedImageDataset(
                jpegs, targets, 224, IMAGENET_MEAN, IMAGENET_STD, augment=augment)
            sets[f"uint8_cache: 224 px, {name}"] = DecodedImageDataset(cache, targets, augment=augment)
    return sets, facts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=640, help="timed images per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache-images", type=int, default=512)
    parser.add_argument("--build-threads", type=int, default=2, help="threads decoding the uint8 cache")
    parser.add_argument("--embedded", default=str(bench_common.REPO_ROOT / "data/embedded/raw/images"))
    parser.add_argument("--gpu-rate", type=float, default=bench_common.STATED_H200_IMAGES_PER_SECOND,
                        help="images/s one GPU consumes (default: the issue's stated H200 figure, not measured)")
    parser.add_argument("--skip-randaugment-off", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    print(bench_common.header("Data loader throughput (benchmarks/bench_loader.py)"))
    with tempfile.TemporaryDirectory() as tmp:
        sets, facts = build_sets(args, Path(tmp))
        print(f"generated {facts['images']} JPEGs, short side 256, quality 90, mean {facts['jpeg_mean_kib']:.1f} KiB; "
              f"decoded cache at 224 px built at {facts['build_images_per_second']:.0f} images/s with "
              f"{args.build_threads} threads ({facts['build_images_per_cpu_second']:.0f} per CPU-second)\n", flush=True)
        cores: dict[str, dict[str, float]] = {}
        loaders: dict[str, dict[int, float]] = {}
        for name, dataset in sets.items():
            cores[name] = per_core(dataset, args.images, args.batch_size)
            loaders[name] = {w: loader_rate(dataset, w, args.batch_size, args.images) for w in args.workers}
            print(f"{name}: {cores[name]['cpu']:.0f} images per CPU-second, {cores[name]['wall']:.0f} per wall-second; "
                  + ", ".join(f"{w} workers {r:.0f}/s" for w, r in loaders[name].items()), flush=True)
    print(f"load average at the end: {bench_common.load_average()}")

    print("\n" + bench_common.markdown_table(
        ["data path, images, augmentation", "per core: img / CPU-s", "per core: img / wall-s",
         *[f"{w} workers (img/s)" for w in args.workers]],
        [[name, f"{cores[name]['cpu']:.0f}", f"{cores[name]['wall']:.0f}", *[f"{loaders[name][w]:.0f}" for w in args.workers]]
         for name in sets],
    ))
    rows, needed = [], {}
    for name in (n for n in sets if "RandAugment" in n):
        rate = cores[name]["cpu"]
        needed[name] = math.ceil(args.gpu_rate / rate)
        rows.append([name, f"{rate:.0f}", "yes" if rate >= TARGET_PER_CORE else "no", needed[name],
                     *[f"{args.gpu_rate / b:.1f}" for b in PAPER_BATCHES.values()]])
    print(f"\nGPU rate to feed: {args.gpu_rate:.0f} images/s (STATED for TResNet-M 224 px bf16 on an H200, "
          f"not measured here); target >= {TARGET_PER_CORE:.0f} images/s per core with the paper's augmentation.")
    print("\n" + bench_common.markdown_table(
        ["paper augmentation", "img / CPU-s", f">= {TARGET_PER_CORE:.0f}", "workers needed (per GPU)",
         *[f"GPU steps/s, {d} (batch {b})" for d, b in PAPER_BATCHES.items()]], rows))
    paper_jpeg = next((n for n in sets if n.startswith("jpeg") and "RandAugment" in n), None)
    return {"per_core": cores, "loaders": loaders, "facts": facts, "gpu_rate": args.gpu_rate, "workers_needed": needed,
            "per_worker": loaders[paper_jpeg].get(1) if paper_jpeg else None}


if __name__ == "__main__":
    main()
