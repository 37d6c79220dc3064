"""Projected training wall time and GPU cost of the paper's three datasets, on 1 and 8 GPUs.

    python benchmarks/project_cost.py [--rate 3500] [--usd-per-gpu-hour 3.5] [--efficiency 0.9]

Wall time = training images x epochs / (rate x GPUs x efficiency), for the training loop alone
(no validation, no checkpoint writes, no start-up), assuming the data path keeps up and DDP
scales linearly up to the ``--efficiency`` factor (1 GPU always counts 1.0). Cost = wall time
x GPUs x ``--usd-per-gpu-hour``.

The default ``--rate`` is the issue's STATED figure for TResNet-M at 224 px, bf16, on one H200
(about 3,500 images/s): it was NOT measured in this session (no GPU). Pass the measured rate
of ``benchmarks/gpu_train_bench.py`` (its ``real`` / ``sdl`` row) when there is one.

Training images and epochs (``params.yaml`` epochs; image counts with their sources):

- NUS-WIDE: 161,789 images in the official ``TrainImagelist.txt`` (Chua et al., CIVR 2009);
  about 150,000 are still downloadable from Flickr (the issue's figure, used by default),
  minus the 2 % validation split; 7 epochs.
- MS COCO (Bansal et al. zero-shot split, as the paper): 73,774 training images (SDL paper,
  section 4); 20 epochs.
- Open Images v4: 9,011,219 training images with image-level labels (Open Images V4,
  Kuznetsova et al., IJCV 2020, Table 1; the LESA / BiAM / SDL protocol trains on this
  image-level-label set); 7 epochs. (1,743,042 is the v4 train subset with bounding boxes,
  not the one used here.)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import STATED_H200_IMAGES_PER_SECOND, markdown_table


@dataclass(frozen=True)
class Dataset:
    name: str
    train_images: int
    epochs: int
    batch_size: int
    source: str


DATASETS = (
    Dataset("NUS-WIDE", 150_000, 7, 192, "~150k downloadable of 161,789 official train images"),
    Dataset("MS COCO", 73_774, 20, 32, "SDL paper, Bansal et al. split"),
    Dataset("Open Images v4", 9_011_219, 7, 96, "v4 image-level-label train set"),
)


def project(rate: float, usd_per_gpu_hour: float, efficiency: float, gpus: tuple[int, ...]) -> list[dict]:
    rows = []
    for dataset in DATASETS:
        images = dataset.train_images * dataset.epochs
        for n in gpus:
            effective = rate * n * (1.0 if n == 1 else efficiency)
            hours = images / effective / 3600
            rows.append({
                "dataset": dataset.name, "train_images": dataset.train_images, "epochs": dataset.epochs,
                "images_seen": images, "gpus": n, "images_per_second": effective, "hours": hours,
                "gpu_hours": hours * n, "usd": hours * n * usd_per_gpu_hour,
                "steps_per_epoch": dataset.train_images // dataset.batch_size, "batch_per_gpu": dataset.batch_size / n,
            })
    return rows


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=STATED_H200_IMAGES_PER_SECOND,
                        help="training images/s on one GPU (default: the STATED H200 figure, not measured)")
    parser.add_argument("--usd-per-gpu-hour", type=float, default=3.5)
    parser.add_argument("--efficiency", type=float, default=0.9, help="DDP scaling efficiency beyond 1 GPU")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--label", default=None, help="where --rate comes from, e.g. 'measured on an H100 by gpu_train_bench'")
    args = parser.parse_args(argv)
    if args.rate <= 0 or not 0 < args.efficiency <= 1 or args.usd_per_gpu_hour < 0:
        parser.error("--rate must be > 0, --efficiency in (0, 1], --usd-per-gpu-hour >= 0")

    label = args.label or ("STATED H200 figure, not measured" if args.rate == STATED_H200_IMAGES_PER_SECOND else "given")
    print(f"step rate {args.rate:.0f} images/s per GPU ({label}); ${args.usd_per_gpu_hour:.2f} per GPU-hour; "
          f"DDP efficiency {args.efficiency:.2f} beyond 1 GPU; training loop only\n")
    rows = project(args.rate, args.usd_per_gpu_hour, args.efficiency, tuple(args.gpus))
    print(markdown_table(
        ["dataset", "train images", "epochs", "GPUs", "batch per GPU", "images/s", "wall time", "GPU-hours", "cost (USD)"],
        [[r["dataset"], f"{r['train_images']:,}", r["epochs"], r["gpus"], f"{r['batch_per_gpu']:g}",
          f"{r['images_per_second']:,.0f}", _duration(r["hours"]), f"{r['gpu_hours']:.2f}", f"{r['usd']:,.2f}"]
         for r in rows],
    ))
    print("\nsources: " + "; ".join(f"{d.name}: {d.source}" for d in DATASETS))
    return rows


if __name__ == "__main__":
    main()
