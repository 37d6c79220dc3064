"""Data loader throughput (decode + augment), per worker, against the GPU step rate it must feed.

    python benchmarks/bench_loader.py [--workers 0 1 2] [--images 640] [--batch-size 32]

Reads images through ``sdl.data.dataset.TaggedImageDataset`` and a ``DataLoader`` as
``sdl.training.loop`` does, for 0 (main process), 1 and 2 workers, and reports images/s:

- ``embedded``: the real embedded images (``data/embedded/raw/images``, 64 px PNG mosaics) at
  the embedded training size (128 px) with its augmentation (flips, cutout);
- ``cache-256``: a generated JPEG cache at short side 256 (what the ``download`` stage's
  ``cache_short_side: 256`` writes for the paper's datasets) at the training size 224, with
  the paper's augmentation (flips, cutout, RandAugment), and without RandAugment.

The first batch of each loader (worker start-up) is not timed. Then, for the paper's
datasets and batch sizes, the number of workers that keeps one GPU busy: the GPU step rate is
the issue's *stated* figure for TResNet-M at 224 px in bf16 on an H200 (about 3,500 images/s;
``--gpu-rate``), NOT a measurement, divided by the per-worker rate measured here (1 worker).
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
from torch.utils.data import DataLoader, RandomSampler

from sdl.data.dataset import AugmentConfig, TaggedImageDataset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PAPER_BATCHES = {"nus_wide": 192, "coco": 32, "open_images": 96}  # params.yaml train.<dataset>.batch_size


def rate(dataset: TaggedImageDataset, workers: int, batch_size: int, images: int) -> float:
    """Images/s of a loader over ``images`` images after its first batch."""
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, drop_last=True,
        sampler=RandomSampler(dataset, replacement=True, num_samples=images + batch_size,
                              generator=torch.Generator().manual_seed(0)),
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )
    iterator = iter(loader)
    next(iterator)  # start-up: workers fork and fill their queues
    begin = time.perf_counter()
    count = sum(len(batch[0]) for batch in iterator)
    return count / (time.perf_counter() - begin)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=640, help="timed images per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache-images", type=int, default=512)
    parser.add_argument("--embedded", default=str(bench_common.REPO_ROOT / "data/embedded/raw/images"))
    parser.add_argument("--gpu-rate", type=float, default=bench_common.STATED_H200_IMAGES_PER_SECOND,
                        help="images/s one GPU consumes (default: the issue's stated H200 figure, not measured)")
    parser.add_argument("--skip-randaugment-off", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    print(bench_common.header("Data loader throughput (benchmarks/bench_loader.py)"))
    sets: dict[str, TaggedImageDataset] = {}
    embedded = sorted(Path(args.embedded).glob("*.png"))
    if embedded:
        sets["embedded 64 px PNG -> 128, flip + cutout"] = TaggedImageDataset(
            embedded, np.zeros((len(embedded), 1), np.float32), 128, IMAGENET_MEAN, IMAGENET_STD,
            augment=AugmentConfig(hflip=True, cutout_p=0.5), seed=0,
        )
    else:
        print(f"(no embedded images under {args.embedded}: run `dvc repro download@embedded`)")
    with tempfile.TemporaryDirectory() as tmp:
        cache = bench_common.make_jpeg_cache(tmp, args.cache_images, 256)
        mean_kib = np.mean([p.stat().st_size for p in cache]) / 1024
        print(f"generated cache: {len(cache)} JPEGs, short side 256, quality 90, mean {mean_kib:.1f} KiB\n")
        targets = np.zeros((len(cache), 1), np.float32)
        sets["cache-256 JPEG -> 224, flip + cutout + RandAugment (paper)"] = TaggedImageDataset(
            cache, targets, 224, IMAGENET_MEAN, IMAGENET_STD,
            augment=AugmentConfig(hflip=True, cutout_p=0.5, randaugment=True), seed=0,
        )
        if not args.skip_randaugment_off:
            sets["cache-256 JPEG -> 224, flip + cutout"] = TaggedImageDataset(
                cache, targets, 224, IMAGENET_MEAN, IMAGENET_STD,
                augment=AugmentConfig(hflip=True, cutout_p=0.5), seed=0,
            )
        results: dict[str, dict[int, float]] = {}
        for name, dataset in sets.items():
            results[name] = {}
            for workers in args.workers:
                results[name][workers] = rate(dataset, workers, args.batch_size, args.images)
                print(f"{name}, {workers} workers: {results[name][workers]:.0f} images/s", flush=True)

    print("\n" + bench_common.markdown_table(
        ["images, augmentation", *[f"{w} workers (img/s)" for w in args.workers]],
        [[name, *[f"{by_workers[w]:.0f}" for w in args.workers]] for name, by_workers in results.items()],
    ))

    paper = next((n for n in results if "RandAugment" in n), None)
    per_worker = results[paper].get(1) if paper else None
    if per_worker:
        print(f"\nGPU rate to feed: {args.gpu_rate:.0f} images/s (STATED for TResNet-M 224 px bf16 on an H200, "
              "not measured here); per-worker rate: the 1-worker rate of the paper augmentation above, "
              f"{per_worker:.0f} images/s on this CPU.")
        rows = []
        for dataset, batch in PAPER_BATCHES.items():
            steps = args.gpu_rate / batch
            rows.append([dataset, batch, f"{steps:.1f}", f"{1e3 / steps:.0f}", math.ceil(args.gpu_rate / per_worker)])
        print("\n" + bench_common.markdown_table(
            ["dataset", "batch", "GPU steps/s", "ms per step", "workers needed (per GPU)"], rows))
    return {"results": results, "per_worker": per_worker, "gpu_rate": args.gpu_rate}


if __name__ == "__main__":
    main()
