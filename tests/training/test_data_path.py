"""The training data path (sdl.training.data_path, train.<d>.data_path): a run over the decoded
uint8 cache trains the weights a run over the JPEG files trains, bit for bit (without
RandAugment), with the cache built once in the state folder and batches normalised on the device."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from sdl.config.training import AugmentConfig, TrainConfig
from sdl.data.dataset import TaggedImageDataset
from sdl.data.decoded_cache import META
from sdl.data.decoded_dataset import DecodedImageDataset
from sdl.training.data_path import decoded_cache_folder, training_images
from sdl.training.device import device_batches
from sdl.training.loop import CHECKPOINT_FILE, TrainData, train
from tests.helpers.ddp import ddp_data
from tests.helpers.gpu import needs_cuda

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    return ddp_data(tmp_path_factory.mktemp("squares"))  # 24 + 8 images of coloured squares


CONFIG = TrainConfig(
    backbone="test_efficientnet", pretrained=False, num_rows=2, image_size=32, epochs=2, batch_size=8, lr=3e-3,
    augment=AugmentConfig(hflip=True, cutout_p=0.5), best_metric="gzsl.f1@1", device="cpu",
)


def _weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)["model"]


def test_the_data_path_picks_the_dataset(data, tmp_path):
    jpeg = training_images(CONFIG, data, MEAN, STD, tmp_path)
    assert isinstance(jpeg, TaggedImageDataset) and not (tmp_path / "decoded-32px").exists()
    cached = training_images(dataclasses.replace(CONFIG, data_path="uint8_cache"), data, MEAN, STD, tmp_path)
    assert isinstance(cached, DecodedImageDataset) and len(cached) == len(data.train_paths)
    assert (tmp_path / "decoded-32px" / META).is_file()
    elsewhere = dataclasses.replace(CONFIG, data_path="uint8_cache", decoded_cache_dir=str(tmp_path / "fast-disk"))
    assert decoded_cache_folder(elsewhere, tmp_path) == tmp_path / "fast-disk"
    training_images(elsewhere, data, MEAN, STD, tmp_path)
    assert (tmp_path / "fast-disk" / META).is_file()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_cached_run_trains_the_jpeg_runs_weights(data, tmp_path, workers):
    config = dataclasses.replace(CONFIG, num_workers=workers)
    jpeg = train(config, data, tmp_path / "jpeg", progress=False)
    cached = train(dataclasses.replace(config, data_path="uint8_cache"), data, tmp_path / "cached", progress=True)
    assert [h["train_loss"] for h in cached.history] == [h["train_loss"] for h in jpeg.history]
    a, b = _weights(tmp_path / "jpeg"), _weights(tmp_path / "cached")
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert (tmp_path / "cached" / "decoded-32px" / META).is_file()


def test_a_cached_run_with_randaugment_trains(data, tmp_path):
    config = dataclasses.replace(CONFIG, data_path="uint8_cache", augment=AugmentConfig(randaugment=True), epochs=1)
    result = train(config, data, tmp_path, progress=False)
    assert np.isfinite(result.history[0]["train_loss"])


def test_device_batches_normalise_uint8_batches():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    targets = torch.ones(2, 4)
    floats = torch.randn(2, 3, 8, 8)
    out = list(device_batches([(images, targets), (floats, targets)], torch.device("cpu"), True, (MEAN, STD)))
    expected = (images.float() / 255.0 - torch.tensor(MEAN).reshape(1, 3, 1, 1)) / torch.tensor(STD).reshape(1, 3, 1, 1)
    assert torch.allclose(out[0][0], expected, rtol=0, atol=1e-6) and out[0][0].dtype == torch.float32
    assert out[0][0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out[1][0], floats)  # float batches (the JPEG path) pass as they are
    with pytest.raises(ValueError, match="normalize"):
        list(device_batches([(images, targets)], torch.device("cpu"), False))


def test_the_data_path_in_the_fingerprint():
    """jpeg (the default) keeps earlier checkpoints' fingerprint; another data path starts over
    (RandAugment's pixels differ slightly); where the cache lives does not matter."""
    base = TrainConfig().fingerprint()
    assert TrainConfig(data_path="jpeg", decoded_cache_dir="/x", nnodes=4, rdzv_endpoint="h:1").fingerprint() == base
    cached = TrainConfig(data_path="uint8_cache").fingerprint()
    assert cached != base and TrainConfig(data_path="uint8_cache", decoded_cache_dir="/y").fingerprint() == cached
    with pytest.raises(ValueError, match="data_path"):
        TrainConfig(data_path="png")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CUDA (device machine only)


@pytest.mark.gpu
@needs_cuda
def test_cached_run_on_cuda_normalises_on_the_device(data, tmp_path):
    """On CUDA the uint8 batches are copied as bytes on the side stream and normalised there:
    the same inputs as the CPU normalisation, and a cached run tracks the JPEG run (bf16 and
    cuDNN need not repeat bit for bit)."""
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8).pin_memory()
    targets = torch.ones(4, 2).pin_memory()
    (on_device, _), = list(device_batches([(images, targets)], torch.device("cuda"), True, (MEAN, STD)))
    (on_cpu, _), = list(device_batches([(images, targets)], torch.device("cpu"), True, (MEAN, STD)))
    assert torch.equal(on_device.cpu(), on_cpu)
    config = dataclasses.replace(CONFIG, device="cuda", num_workers=2)
    jpeg = train(config, data, tmp_path / "jpeg", progress=False)
    cached = train(dataclasses.replace(config, data_path="uint8_cache"), data, tmp_path / "cached", progress=False)
    assert np.allclose([h["train_loss"] for h in cached.history], [h["train_loss"] for h in jpeg.history], rtol=1e-2)
