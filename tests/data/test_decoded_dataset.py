"""Training images from the decoded cache (sdl.data.decoded_dataset) against the PIL path
(sdl.data.dataset.TaggedImageDataset): the same tensors for every sample and epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sdl.config.training import AugmentConfig
from sdl.data.dataset import TaggedImageDataset
from sdl.data.decoded_cache import ensure_decoded_cache
from sdl.data.decoded_dataset import DecodedImageDataset
from sdl.data.tensor_augment import Normalizer
from tests.helpers.images import photo_like

SIZE = 32
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i in range(12):
        path = folder / f"{i:02d}.jpg"
        Image.fromarray(photo_like(i, 40 + 3 * i)).save(path, quality=90)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def cache(paths, tmp_path_factory: pytest.TempPathFactory):
    return ensure_decoded_cache(paths, tmp_path_factory.mktemp("cache"), SIZE)


def _targets(count: int) -> np.ndarray:
    return np.eye(4, dtype=np.float32)[np.arange(count) % 4]


def test_items_equal_the_pil_paths_without_randaugment(paths, cache):
    augment = AugmentConfig(hflip=True, cutout_p=0.5)
    pil_path = TaggedImageDataset(paths, _targets(len(paths)), SIZE, MEAN, STD, augment=augment, seed=4)
    decoded = DecodedImageDataset(cache, _targets(len(paths)), augment=augment, seed=4)
    normalize = Normalizer(MEAN, STD)
    for epoch in range(3):
        pil_path.set_epoch(epoch)
        decoded.set_epoch(epoch)
        for index in range(len(paths)):
            expected, expected_target = pil_path[index]
            image, target = decoded[index]
            assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE)
            assert torch.equal(normalize(image.unsqueeze(0))[0], expected), (epoch, index)
            assert torch.equal(target, expected_target)


def test_randaugment_items_stay_close_to_the_pil_paths(paths, cache):
    """With RandAugment the same operations run; their pixels differ within the op tolerances
    (tests/data/test_tensor_randaugment.py): compare in grey levels."""
    augment = AugmentConfig(hflip=True, cutout_p=0.5, randaugment=True)
    pil_path = TaggedImageDataset(paths, None, SIZE, (0, 0, 0), (1 / 255, 1 / 255, 1 / 255), augment=augment, seed=1)
    decoded = DecodedImageDataset(cache, _targets(len(paths)), augment=augment, seed=1)
    diffs = []
    for epoch in range(4):
        pil_path.set_epoch(epoch)
        decoded.set_epoch(epoch)
        for index in range(len(paths)):
            levels = pil_path[index][0].round()  # (x / 255) / (1 / 255): back to grey levels
            diffs.append((levels - decoded[index][0].float()).abs().mean().item())
    assert np.mean(diffs) < 0.5 and max(diffs) < 3.0


def test_loader_workers_give_the_main_processes_batches(cache):
    dataset = DecodedImageDataset(cache, _targets(len(cache)), augment=AugmentConfig(randaugment=True), seed=2)
    main = [batch for batch in DataLoader(dataset, batch_size=4)]
    workers = [batch for batch in DataLoader(dataset, batch_size=4, num_workers=2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(main, workers, strict=True))
    assert main[0][0].dtype == torch.uint8


def test_targets_must_match_the_cache(cache):
    with pytest.raises(ValueError, match="12 cached images but 3 target rows"):
        DecodedImageDataset(cache, _targets(3))


def test_spawned_loader_workers_give_the_same_batches(cache):
    """A spawned worker (macOS' default) gets the dataset pickled: the cache maps its file
    again, RandAugment's tables are made again; the batches are the main process's."""
    dataset = DecodedImageDataset(cache, _targets(len(cache)), augment=AugmentConfig(randaugment=True), seed=3)
    main = [batch for batch in DataLoader(dataset, batch_size=6)]  # the main process's tables are filled now
    spawned = DataLoader(dataset, batch_size=6, num_workers=1, multiprocessing_context="spawn")
    assert all(torch.equal(a[0], b[0]) for a, b in zip(main, spawned, strict=True))
