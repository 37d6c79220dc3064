"""Helpers shared by the benchmarks: machine description, a generated JPEG cache, timing.

Imported by the scripts in this folder (``sys.path`` holds the script's folder when it runs);
not part of the ``sdl`` package.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# The GPU step rate the issue states for TResNet-M at 224 px, bf16, on one H200. It was NOT
# measured in the sessions that wrote these benchmarks (no GPU was lent to them).
STATED_H200_IMAGES_PER_SECOND = 3500.0


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """``lscpu`` model name and the cores this process may use."""
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores available"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def proc_status_kib(field: str) -> int | None:
    """A KiB field of /proc/self/status (``VmRSS``, ``VmHWM``); None where there is none (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def header(title: str) -> str:
    """The lines every benchmark prints first: title, date, machine, versions, command."""
    import torch

    lines = [
        f"# {title} — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {machine()}; load average {load_average()}",
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]
    if torch.cuda.is_available():
        lines.insert(2, f"gpu: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- JPEG cache


def synthetic_photo(index: int, short_side: int, seed: int = 0) -> bytes:
    """A JPEG (quality 90, like sdl.data.image_cache) of a smooth, photo-like image: short side
    ``short_side``, aspect 1:1 to 1.5:1, low-frequency colour fields, a few shapes and mild
    noise, so that its size and decode cost are closer to a photo's than random noise's."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng([seed, index])
    long_side = int(short_side * rng.uniform(1.0, 1.5))
    width, height = (long_side, short_side) if rng.random() < 0.7 else (short_side, long_side)
    coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, size=(height, width, 3)).astype(np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_one(job: tuple[int, int, str]) -> int:
    index, short_side, folder = job
    path = Path(folder) / f"{index:06d}.jpg"
    if not path.exists():
        path.write_bytes(synthetic_photo(index, short_side))
    return path.stat().st_size


def make_jpeg_cache(folder: str | Path, count: int, short_side: int = 256, workers: int | None = None) -> list[Path]:
    """``count`` generated JPEGs in ``folder`` (reused when already there), as the ``download``
    stage's pre-resized cache would hold them; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(i, short_side, str(folder)) for i in range(count)]
    workers = workers or min(16, os.cpu_count() or 1)
    if workers > 1 and count > 64:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=16))
    else:
        for job in jobs:
            _write_one(job)
    return [folder / f"{i:06d}.jpg" for i in range(count)]


def random_targets(count: int, tags: int, max_positives: int, seed: int = 0) -> np.ndarray:
    """Multi-hot float32 targets with 1..max_positives positives per image."""
    rng = np.random.default_rng(seed)
    targets = np.zeros((count, tags), dtype=np.float32)
    for row in targets:
        row[rng.choice(tags, size=int(rng.integers(1, max_positives + 1)), replace=False)] = 1.0
    return targets


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
