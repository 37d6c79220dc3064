"""The augmentation on uint8 tensors (sdl.data.tensor_augment) against the PIL path
(sdl.data.dataset), op by op and whole, for the same per-sample generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdl.config.training import AugmentConfig
from sdl.data.augment_draws import CutoutBox, draw_augmentation
from sdl.data.dataset import TaggedImageDataset, paint_cutout, to_tensor
from sdl.data.tensor_augment import Normalizer, TensorAugment, hflip, normalize
from sdl.data.tensor_augment import paint_cutout as paint_cutout_tensor
from tests.helpers.images import photo_like

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def test_hflip_is_pils_mirror():
    pixels = photo_like(0, 33)
    np.testing.assert_array_equal(_hwc(hflip(_chw(pixels))), np.asarray(Image.fromarray(pixels).transpose(Image.FLIP_LEFT_RIGHT)))


def test_cutout_paints_pils_rectangle():
    pixels = photo_like(1, 40)
    for box in (CutoutBox(3, 5, 20, 30, (1, 2, 3)), CutoutBox(0, 0, 40, 7, (255, 0, 128)), CutoutBox(9, 9, 9, 20, (5, 5, 5))):
        expected = np.asarray(paint_cutout(Image.fromarray(pixels), box))
        np.testing.assert_array_equal(_hwc(paint_cutout_tensor(_chw(pixels), box)), expected)


@pytest.mark.parametrize("config", [
    AugmentConfig(hflip=True, cutout_p=0.5), AugmentConfig(hflip=True, cutout_p=1.0, cutout_factor=0.7),
    AugmentConfig(hflip=False, cutout_p=0.5, cutout_factor=0.25),
])
def test_same_flips_and_cutouts_as_the_pil_path(config):
    """Without RandAugment the two paths give the same pixels for every sample's generator."""
    size = 48
    pil_path = TaggedImageDataset([], None, size, MEAN, STD, augment=config)
    tensor_path = TensorAugment(config)
    flips = cutouts = 0
    for index in range(200):
        pixels = photo_like(index % 5, size)
        expected = np.asarray(pil_path._augment(Image.fromarray(pixels), np.random.default_rng([3, 2, index])))
        image = _chw(pixels)
        got = tensor_path(image, np.random.default_rng([3, 2, index]))
        np.testing.assert_array_equal(_hwc(got), expected, err_msg=f"sample {index}")
        np.testing.assert_array_equal(_hwc(image), pixels)  # the input is left as it was
        draws = draw_augmentation(config, np.random.default_rng([3, 2, index]), size, size)
        flips += draws.flip
        cutouts += draws.cutout is not None
    assert (flips > 60) == config.hflip and 0.5 * config.cutout_p * 200 < cutouts <= config.cutout_p * 200 + 30


def test_randaugment_gets_the_pil_paths_seed(monkeypatch):
    """With RandAugment on, the tensor path seeds it with the seed the PIL path seeds torch with."""
    config = AugmentConfig(hflip=True, cutout_p=0.5, randaugment=True)
    seen = []

    class Recording:
        def __call__(self, image: torch.Tensor, seed: int) -> torch.Tensor:
            seen.append(seed)
            return image

    augment = TensorAugment(config)
    augment._randaugment = Recording()  # type: ignore[assignment]
    pil_seeds = []
    pil_path = TaggedImageDataset([], None, 16, MEAN, STD, augment=config)
    pil_path._randaugment = lambda image: pil_seeds.append(torch.initial_seed()) or image
    for index in range(20):
        augment(_chw(photo_like(index, 16)), np.random.default_rng([0, 0, index]))
        pil_path._augment(Image.fromarray(photo_like(index, 16)), np.random.default_rng([0, 0, index]))
    assert seen == pil_seeds and len(set(seen)) == 20


def test_normalisation_gives_the_pil_paths_numbers():
    pixels = [photo_like(i, 24) for i in range(4)]
    batch = torch.stack([_chw(p) for p in pixels])
    expected = torch.stack([to_tensor(Image.fromarray(p), MEAN, STD) for p in pixels])
    assert torch.equal(Normalizer(MEAN, STD)(batch), expected)
    channels_last = batch.contiguous(memory_format=torch.channels_last)
    out = Normalizer(MEAN, STD)(channels_last)
    assert torch.equal(out, expected) and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(normalize(batch[0], MEAN, STD), expected[0])
    with pytest.raises(TypeError, match="uint8"):
        Normalizer(MEAN, STD)(expected)
