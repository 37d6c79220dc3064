"""RandAugment on uint8 tensors (sdl.data.tensor_randaugment).

Against torchvision itself, the independent computation: ``torchvision.transforms.RandAugment``
on the same tensor after ``torch.manual_seed(seed)`` must give the same pixels, and its op
choices the same operations. Against the PIL path (torchvision's RandAugment on PIL images),
op by op: the measured differences are the tolerances below (BENCHMARKS.md records them).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.data.tensor_randaugment import GEOMETRIC, OPS, Op, TensorRandAugment, draw_ops, magnitude_table
from tests.helpers.images import photo_like

ensure_torchvision_importable()
from torchvision.transforms import InterpolationMode, RandAugment  # noqa: E402
from torchvision.transforms import autoaugment as tv_autoaugment  # noqa: E402

SIZE = 96
# PIL vs tensor, per operation at RandAugment's magnitude: the largest difference of a pixel
# value, and the largest share of values that differ at all. Measured on 8 photo-like images
# at 96 and 224 px, both signs (2026-12): Color 1 / 15 %, Contrast 1 / 29 %, Sharpness
# 1 / 1.5 %, AutoContrast 1 / 0.8 % (PIL rounds where torchvision truncates); the others equal.
PIL_TOLERANCE = {
    "Color": (1, 0.25), "Contrast": (1, 0.35), "Sharpness": (1, 0.05), "AutoContrast": (1, 0.02),
    "Identity": (0, 0.0), "Brightness": (0, 0.0), "Posterize": (0, 0.0), "Solarize": (0, 0.0), "Equalize": (0, 0.0),
}
ROTATE_MOVED = 0.003  # share of output pixels whose source differs (by 1 px) between PIL and torch


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    out = [torch.from_numpy(photo_like(i, SIZE)).permute(2, 0, 1).contiguous() for i in range(4)]
    out.append(torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)))
    out.append(torch.full((3, SIZE, SIZE), 77, dtype=torch.uint8))  # constant: AutoContrast / Equalize edge cases
    out.append(torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)))
    return out


@pytest.fixture(scope="module")
def ours() -> TensorRandAugment:
    return TensorRandAugment()


def test_equals_torchvision_randaugment_on_tensors(images, ours):
    reference = RandAugment()
    for seed in range(300):
        image = images[seed % len(images)]
        torch.manual_seed(seed)
        expected = reference(image)
        got = ours(image, seed)
        assert torch.equal(got, expected), (seed, draw_ops(seed, *image.shape[1:]))


def test_draws_the_operations_torchvision_draws(monkeypatch):
    seen: list[tuple[str, float]] = []
    original = tv_autoaugment._apply_op

    def recording(img, op_name, magnitude, interpolation, fill):  # type: ignore[no-untyped-def]
        seen.append((op_name, magnitude))
        return original(img, op_name, magnitude, interpolation=interpolation, fill=fill)

    monkeypatch.setattr(tv_autoaugment, "_apply_op", recording)
    image = torch.zeros((3, 40, 60), dtype=torch.uint8)
    names = set()
    for seed in range(200):
        seen.clear()
        torch.manual_seed(seed)
        RandAugment()(image)
        ops = draw_ops(seed, 40, 60)
        assert [(op.name, op.magnitude) for op in ops] == seen
        names.update(op.name for op in ops)
    assert names == set(OPS)  # 400 draws reach every operation


def test_each_operation_equals_torchvision_op(images, ours):
    for image in images:
        table = magnitude_table(*image.shape[1:])
        for name in OPS:
            magnitude, signed = table[name]
            for sign in (1.0, -1.0) if signed else (1.0,):
                expected = tv_autoaugment._apply_op(image, name, sign * magnitude, InterpolationMode.NEAREST, None)
                assert torch.equal(ours.apply(image, Op(name, sign * magnitude)), expected), name


def _pil_map(name: str, magnitude: float, size: int) -> np.ndarray:
    """PIL's source pixel per output pixel: the operation on a 32-bit image of pixel numbers."""
    numbers = Image.fromarray(np.arange(1, size * size + 1, dtype=np.int32).reshape(size, size), mode="I")
    moved = tv_autoaugment._apply_op(numbers, name, magnitude, InterpolationMode.NEAREST, None)
    return np.asarray(moved).astype(np.int64).reshape(-1) - 1


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_geometry_against_pil(name, ours):
    """Shear and translate sample the same source pixels as PIL; rotation a neighbour 1 px
    away for a few pixels (PIL and grid_sample round the rotated coordinates differently)."""
    for size in (SIZE, 224):
        magnitude = magnitude_table(size, size)[name][0]
        for sign in (1.0, -1.0):
            pil = _pil_map(name, sign * magnitude, size)
            source, filled = ours._map(Op(name, sign * magnitude), size, size)
            torch_map = np.where(filled, -1, source)
            assert np.array_equal(pil < 0, torch_map < 0)  # the same pixels are filled
            moved = pil != torch_map
            if name != "Rotate":
                assert not moved.any()
                continue
            assert moved.mean() <= ROTATE_MOVED
            rows, cols = pil[moved] // size - torch_map[moved] // size, pil[moved] % size - torch_map[moved] % size
            assert np.abs(rows).max() <= 1 and np.abs(cols).max() <= 1


@pytest.mark.parametrize("name", sorted(set(OPS) - GEOMETRIC))
def test_pixel_values_against_pil(name, ours):
    largest, share = PIL_TOLERANCE[name]
    for size in (SIZE, 224):
        magnitude, signed = magnitude_table(size, size)[name]
        for sign in (1.0, -1.0) if signed else (1.0,):
            for index in range(3):
                pixels = photo_like(index, size)
                pil = np.asarray(tv_autoaugment._apply_op(Image.fromarray(pixels), name, sign * magnitude,
                                                          InterpolationMode.NEAREST, None)).astype(int)
                tensor = ours.apply(torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), Op(name, sign * magnitude))
                diff = np.abs(pil - tensor.permute(1, 2, 0).numpy().astype(int))
                assert diff.max() <= largest and (diff > 0).mean() <= share, (name, sign, diff.max(), (diff > 0).mean())


def test_whole_randaugment_against_pil(ours):
    """Composed, the operations' small differences can grow at a few pixels (a value 1 apart
    on either side of Solarize's threshold, an Equalize table shifted): the mean stays small."""
    reference = RandAugment()
    means = []
    for seed in range(120):
        pixels = photo_like(seed % 6, SIZE)
        torch.manual_seed(seed)
        pil = np.asarray(reference(Image.fromarray(pixels))).astype(int)
        tensor = ours(torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), seed).permute(1, 2, 0).numpy()
        means.append(np.abs(pil - tensor.astype(int)).mean())
    print(f"\nPIL vs tensor RandAugment, 120 images: mean |diff| {np.mean(means):.3f}, worst image {max(means):.3f}")
    assert np.mean(means) < 0.2 and max(means) < 2.0
