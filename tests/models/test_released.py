"""The released SDL checkpoint layout (ZS_SDL ``NUS_mtresnet_224.pth``) loaded into the project's
model (sdl.models.released), on a state dict built here with the released names and shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.models import load_model, save_model
from sdl.models.released import load_released_checkpoint
from tests.helpers.released import randomise_batchnorm, released_state_dict

ensure_torchvision_importable()
import timm  # noqa: E402

ROWS, DIM = 7, 300


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    """A timm TResNet-M with random weights and batch statistics: what the file must compute."""
    torch.manual_seed(0)
    network = timm.create_model("tresnet_m", pretrained=False, num_classes=0)
    randomise_batchnorm(network, seed=1)
    return network.eval()


@pytest.fixture(scope="module")
def head() -> torch.Tensor:
    return torch.randn(DIM * ROWS, 2048, generator=torch.Generator().manual_seed(2)) * 0.02


@pytest.fixture(scope="module")
def released(reference: torch.nn.Module, head: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The released file's structure: {'model': state_dict, 'num_classes', 'idx_to_class'}."""
    path = tmp_path_factory.mktemp("released") / "NUS_mtresnet_224.pth"
    state = released_state_dict(reference, head, seed=3)
    torch.save({"model": state, "num_classes": 1006, "idx_to_class": {i: f"tag{i}" for i in range(1006)}}, path)
    return path


def released_scores(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    vectors: torch.Tensor) -> np.ndarray:
    """infer.py's scoring in numpy: x = output.reshape(300, M), p = x.T @ wordvecs, max over rows."""
    flat = features.double().numpy() @ weight.double().numpy().T
    if bias is not None:
        flat = flat + bias.double().numpy()
    out = np.empty((flat.shape[0], vectors.shape[0]))
    for b in range(flat.shape[0]):
        x = flat[b].reshape(DIM, ROWS)
        out[b] = (x.T @ vectors.double().numpy().T).max(axis=0)
    return out


def test_released_layout_is_what_the_facts_say(released: Path) -> None:
    state = torch.load(released, weights_only=True)["model"]
    assert state["conv1.0.weight"].shape == (64, 48, 3, 3)
    assert {"conv1.1.weight", "conv1.1.bias", "conv1.1.running_mean", "conv1.1.running_var"} <= set(state)
    assert "layer2.0.conv1.0.0.weight" in state and "layer2.0.conv1.0.1.running_var" in state
    assert "layer3.0.conv2.0.0.weight" in state and "layer4.0.conv2.0.1.bias" in state
    assert "layer2.0.downsample.1.0.weight" in state and not any(k.startswith("layer1.0.downsample") for k in state)
    assert "layer3.10.se.fc2.bias" in state and not any(".se." in k for k in state if k.startswith("layer4"))
    assert state["embedding.weight"].shape == (2100, 2048)
    assert not any(k.startswith("body.") or k.startswith("head.") or "num_batches_tracked" in k for k in state)


def test_scores_equal_the_released_computation(released: Path, reference: torch.nn.Module, head: torch.Tensor) -> None:
    model = load_released_checkpoint(released)
    config = model.config
    assert (config.backbone, config.num_rows, config.wordvec_dim) == ("tresnet_m.miil_in1k", ROWS, DIM)
    assert (config.image_size, config.mean, config.std, config.head_bias) == (224, (0.0,) * 3, (1.0,) * 3, False)
    assert model.embedding.bias is None
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    vectors = torch.nn.functional.normalize(torch.randn(9, DIM, generator=torch.Generator().manual_seed(5)), dim=1)
    with torch.no_grad():
        features = reference(images)
        torch.testing.assert_close(model.backbone(images), features, rtol=1e-5, atol=1e-5)
        got = model.score(images, vectors).double().numpy()
    np.testing.assert_allclose(got, released_scores(features, head, None, vectors), rtol=1e-4, atol=1e-5)
    # InPlaceABN scales by |w| + 1e-5: the file stored -(w - 1e-5) for some channels.
    stored = torch.load(released, weights_only=True)["model"]["conv1.1.weight"]
    assert (stored < 0).any()
    torch.testing.assert_close(model.backbone.body.conv1.bn.weight, stored.abs() + 1e-5)


def test_a_head_bias_is_loaded_saved_and_reloaded(reference: torch.nn.Module, head: torch.Tensor, tmp_path: Path) -> None:
    state = released_state_dict(reference, head, seed=6)
    bias = torch.randn(DIM * ROWS, generator=torch.Generator().manual_seed(7))
    state["embedding.bias"] = bias
    torch.save(state, tmp_path / "bare.pth")  # train.py saves the bare state dict
    model = load_released_checkpoint(tmp_path / "bare.pth")
    assert model.config.head_bias and torch.equal(model.embedding.bias.detach(), bias)
    images = torch.rand(1, 3, 64, 64)
    vectors = torch.nn.functional.normalize(torch.randn(4, DIM), dim=1)
    with torch.no_grad():
        features = reference(images)
        np.testing.assert_allclose(model.score(images, vectors).double().numpy(),
                                   released_scores(features, head, bias, vectors), rtol=1e-4, atol=1e-5)
        again = load_model(save_model(model, tmp_path / "saved"))
        assert again.config == model.config
        assert torch.equal(again.score(images, vectors), model.score(images, vectors))


def test_unknown_and_missing_tensors_are_errors_naming_them(reference: torch.nn.Module, head: torch.Tensor,
                                                            tmp_path: Path) -> None:
    state = released_state_dict(reference, head)
    torch.save({"model": {**state, "layer9.0.conv1.0.weight": torch.zeros(1)}}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth.*1 unexpected.*layer9\.0\.conv1"):
        load_released_checkpoint(tmp_path / "extra.pth")
    del state["layer3.4.conv2.1.running_var"]
    torch.save({"model": state}, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing\.pth.*1 missing.*layer3\.4\.conv2\.bn\.running_var"):
        load_released_checkpoint(tmp_path / "missing.pth")


def test_a_file_without_the_sdl_head_is_refused(reference: torch.nn.Module, head: torch.Tensor, tmp_path: Path) -> None:
    state = released_state_dict(reference, head)
    weight = state.pop("embedding.weight")
    torch.save({"model": state}, tmp_path / "imagenet.pth")
    with pytest.raises(ValueError, match="embedding.weight"):
        load_released_checkpoint(tmp_path / "imagenet.pth")
    torch.save({"model": {**state, "embedding.weight": weight[:-1]}}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"\(2099, 2048\)"):
        load_released_checkpoint(tmp_path / "odd.pth")
    with pytest.raises(FileNotFoundError, match="NUS_mtresnet_224"):
        load_released_checkpoint(tmp_path / "absent.pth")
