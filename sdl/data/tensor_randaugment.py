"""RandAugment on uint8 image tensors: torchvision's ``RandAugment()`` on tensors, pixel for
pixel, at a fraction of its cost.

What it computes: torchvision's defaults (Cubuk et al., "RandAugment", 2020, as
``torchvision.transforms.RandAugment``): 2 operations per image out of 14, magnitude 9 of 31
bins, each signed magnitude negated with p = 0.5, nearest-neighbour geometry, black fill. The
operations and magnitudes come from a torch generator seeded per sample, drawn as torchvision
draws them from the global generator, so :func:`draw_ops` picks what ``RandAugment()`` would
pick after ``torch.manual_seed(seed)``, and :func:`randaugment` returns what it returns on the
same uint8 tensor (tested equal, tests/data/test_tensor_randaugment.py).

How: every operation but two is a table look-up or a gather on the uint8 pixels.

- the 5 geometric operations (shear, translate, rotate) sample the source image at fixed
  positions: the map from output to source pixel is computed once per operation, magnitude
  and image size, by running torchvision's own operation on an image of pixel indices, and
  then applied to any image as a gather (nearest-neighbour sampling copies pixels, so the
  gather is exact);
- Brightness, Posterize, Solarize are per-value: a 256-entry table made by torchvision's own
  function on the 256 values; Contrast is per-value given the image's grey mean (computed as
  torchvision does); AutoContrast and Equalize are per-value per channel given the channel's
  range or histogram (torchvision's formulas, float32 or integer as there);
- Color and Sharpness mix neighbouring pixels or channels: torchvision's tensor functions.

What differs from the PIL path (``sdl.data.dataset``, torchvision's RandAugment on PIL
images): the same operations and magnitudes, but each operation's pixels as torchvision's
tensor implementation computes them, which is not PIL's. Measured op by op in
tests/data/test_tensor_randaugment.py and BENCHMARKS.md ("uint8 tensor path vs PIL").
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)  # the order of torchvision's RandAugment._augmentation_space: op i is drawn as i
GEOMETRIC = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})
NUM_OPS, MAGNITUDE, NUM_BINS = 2, 9, 31  # torchvision's RandAugment() defaults


@dataclass(frozen=True)
class Op:
    """One RandAugment operation with its signed magnitude."""

    name: str
    magnitude: float


def _functional() -> Any:
    from sdl._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import torchvision.transforms.functional as functional

    return functional


@functools.lru_cache(maxsize=64)
def magnitude_table(height: int, width: int) -> dict[str, tuple[float, bool]]:
    """Each operation's magnitude at bin ``MAGNITUDE`` and whether it is signed: torchvision's
    ``RandAugment._augmentation_space`` (the same float32 tensors, read the same way). Cached
    per image size (one training run has one): callers only read it."""
    space = {
        "Identity": (torch.tensor(0.0), False),
        "ShearX": (torch.linspace(0.0, 0.3, NUM_BINS), True),
        "ShearY": (torch.linspace(0.0, 0.3, NUM_BINS), True),
        "TranslateX": (torch.linspace(0.0, 150.0 / 331.0 * width, NUM_BINS), True),
        "TranslateY": (torch.linspace(0.0, 150.0 / 331.0 * height, NUM_BINS), True),
        "Rotate": (torch.linspace(0.0, 30.0, NUM_BINS), True),
        "Brightness": (torch.linspace(0.0, 0.9, NUM_BINS), True),
        "Color": (torch.linspace(0.0, 0.9, NUM_BINS), True),
        "Contrast": (torch.linspace(0.0, 0.9, NUM_BINS), True),
        "Sharpness": (torch.linspace(0.0, 0.9, NUM_BINS), True),
        "Posterize": (8 - (torch.arange(NUM_BINS) / ((NUM_BINS - 1) / 4)).round().int(), False),
        "Solarize": (torch.linspace(255.0, 0.0, NUM_BINS), False),
        "AutoContrast": (torch.tensor(0.0), False),
        "Equalize": (torch.tensor(0.0), False),
    }
    return {name: (float(values[MAGNITUDE].item()) if values.ndim > 0 else 0.0, signed)
            for name, (values, signed) in space.items()}


def draw_ops(seed: int, height: int, width: int) -> list[Op]:
    """The operations ``RandAugment()`` applies to a ``height`` x ``width`` image after
    ``torch.manual_seed(seed)``: the same draws, from a generator of our own."""
    generator = torch.Generator().manual_seed(seed)
    table = magnitude_table(height, width)
    ops = []
    for _ in range(NUM_OPS):
        name = OPS[int(torch.randint(len(OPS), (1,), generator=generator).item())]
        magnitude, signed = table[name]
        if signed and torch.randint(2, (1,), generator=generator):
            magnitude *= -1.0
        ops.append(Op(name, magnitude))
    return ops


# --------------------------------------------------------------------------- per-value tables


def _values() -> torch.Tensor:
    """The 256 uint8 values as a 1 x 1 x 256 image (a per-value function's table is its image)."""
    return torch.arange(256, dtype=torch.uint8).reshape(1, 1, 256)


def _blend_table(ratio: float, other: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` of each value with ``other`` (float32, the image's grey mean)."""
    values = _values()
    return (ratio * values + (1.0 - ratio) * other).clamp(0, 255).to(torch.uint8).reshape(256)


def _autocontrast_tables(image: torch.Tensor) -> np.ndarray:
    """Per channel, torchvision's ``autocontrast``: (v - min) * 255 / (max - min), float32."""
    minimum = image.amin(dim=(-2, -1), keepdim=True).to(torch.float32)
    maximum = image.amax(dim=(-2, -1), keepdim=True).to(torch.float32)
    scale = 255 / (maximum - minimum)
    flat = ~torch.isfinite(scale)  # a constant channel stays as it is
    minimum[flat] = 0
    scale[flat] = 1
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 256)
    return ((values - minimum) * scale).clamp(0, 255).to(torch.uint8).reshape(-1, 256).numpy()


def _equalize_table(channel: np.ndarray) -> np.ndarray | None:
    """torchvision's ``_scale_channel`` (integer arithmetic, as PIL's ``equalize``): the table
    of one channel, or None where it leaves the channel as it is."""
    histogram = np.bincount(channel.reshape(-1), minlength=256).astype(np.int64)
    nonzero = histogram[histogram != 0]
    step = int(nonzero[:-1].sum()) // 255
    if step == 0:
        return None
    table = (np.cumsum(histogram) + step // 2) // step
    return np.clip(np.concatenate([[0], table[:-1]]), 0, 255).astype(np.uint8)


def _sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_sharpness``: blend with the image smoothed by the kernel
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 inside a 1-pixel border. The smoothed value is
    computed in integers, round(s / 13) for the weighted sum s: s / 13 is never within 0.03 of
    a half, so torchvision's float32 convolution rounds to the same integer whatever the order
    of its sums (and this runs about 20 times faster than its grouped convolution here)."""
    pixels = image.numpy().astype(np.int16)  # 13 x 255 fits
    _, height, width = pixels.shape
    if height <= 2 or width <= 2:
        return image
    window = sum(pixels[:, dy : height - 2 + dy, dx : width - 2 + dx] for dy in range(3) for dx in range(3))
    smooth = pixels.copy()
    smooth[:, 1:-1, 1:-1] = (2 * (window + 4 * pixels[:, 1:-1, 1:-1]) + 13) // 26
    degenerate = torch.from_numpy(smooth.astype(np.uint8))
    return (factor * image + (1.0 - factor) * degenerate).clamp(0, 255).to(torch.uint8)  # torchvision's _blend


class TensorRandAugment:
    """``randaugment(image, seed)`` on 3 x H x W uint8 tensors; keeps the per-size tables of
    the geometric operations (a few hundred KiB per operation and size)."""

    def __init__(self) -> None:
        self._maps: dict[tuple[str, float, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._tables: dict[tuple[str, float], np.ndarray] = {}
        self._lock = threading.Lock()
        self._f = _functional()

    def __getstate__(self) -> dict[str, Any]:  # to a spawned loader worker: without the caches
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def __call__(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        _, height, width = image.shape
        for op in draw_ops(seed, height, width):
            image = self.apply(image, op)
        return image

    def apply(self, image: torch.Tensor, op: Op) -> torch.Tensor:
        """One operation on a 3 x H x W uint8 tensor (a new tensor; the input is not changed)."""
        name, magnitude = op.name, op.magnitude
        if name == "Identity":
            return image
        if name in GEOMETRIC:
            return self._geometric(image, op)
        if name == "Color":
            return self._f.adjust_saturation(image, 1.0 + magnitude)
        if name == "Sharpness":
            return _sharpness(image, 1.0 + magnitude)
        if name == "Posterize":
            return self._f.posterize(image, int(magnitude))
        pixels = image.numpy()
        if name == "Contrast":
            grey_mean = torch.mean(self._f.rgb_to_grayscale(image).to(torch.float32), dim=(-3, -2, -1), keepdim=True)
            return torch.from_numpy(np.take(_blend_table(1.0 + magnitude, grey_mean).numpy(), pixels))
        if name == "AutoContrast":
            tables = _autocontrast_tables(image)
            return torch.from_numpy(np.stack([np.take(tables[c], pixels[c]) for c in range(len(pixels))]))
        if name == "Equalize":
            tables = [_equalize_table(channel) for channel in pixels]
            return torch.from_numpy(np.stack([
                pixels[c] if table is None else np.take(table, pixels[c]) for c, table in enumerate(tables)
            ]))
        return torch.from_numpy(np.take(self._value_table(op), pixels))  # Brightness, Solarize

    def _value_table(self, op: Op) -> np.ndarray:
        key = (op.name, op.magnitude)
        table = self._tables.get(key)
        if table is None:
            if op.name == "Brightness":
                table = self._f.adjust_brightness(_values(), 1.0 + op.magnitude)
            elif op.name == "Solarize":
                table = self._f.solarize(_values(), op.magnitude)
            else:
                raise ValueError(f"not a RandAugment operation: {op.name!r}")
            table = table.reshape(256).numpy().copy()
            self._tables[key] = table
        return table

    def _geometric(self, image: torch.Tensor, op: Op) -> torch.Tensor:
        channels, height, width = image.shape
        source, filled = self._map(op, height, width)
        flat = image.reshape(channels, height * width).numpy()
        out = np.take(flat, source, axis=1)
        out[:, filled] = 0  # torchvision's fill for RandAugment(): None, zeros
        return torch.from_numpy(out.reshape(channels, height, width))

    def _map(self, op: Op, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """For each output pixel, the source pixel that torchvision's operation copies (and
        where it fills instead): its own operation applied to an image of pixel numbers."""
        key = (op.name, op.magnitude, height, width)
        found = self._maps.get(key)
        if found is not None:
            return found
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.autoaugment import _apply_op  # the exact call RandAugment makes

        numbers = torch.arange(1, height * width + 1, dtype=torch.float32).reshape(1, height, width)
        moved = _apply_op(numbers, op.name, op.magnitude, interpolation=InterpolationMode.NEAREST, fill=None)
        source = moved.reshape(-1).round().to(torch.int64).numpy() - 1  # float32 holds these integers exactly
        filled = source < 0
        source[filled] = 0
        with self._lock:
            self._maps[key] = (source, filled)
        return source, filled
