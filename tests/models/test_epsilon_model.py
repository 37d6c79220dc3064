"""The Epsilon model (sdl.models.epsilon_model): tokens of a frozen timm backbone, gradients
that reach the head and never the backbone, the family registry (save / load either family),
and a tiny model that overfits a tiny multi-label set with the project's loss."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from sdl.config.epsilon import EpsilonOptions
from sdl.losses import sdl_loss
from sdl.models import (
    EpsilonModel,
    create_model,
    load_model,
    save_model,
    saved_family,
)
from sdl.models.epsilon_model import PAPER_BACKBONE
from sdl.models.registry import CONFIG_FILE, WEIGHTS_FILE
from sdl.models.scoring import score_tags
from sdl.training.setup import parameter_groups

TINY = {"encoder_heads": 2, "dropout": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Small models: one thread."""


def vit(rows: int = 3, dim: int = 16, **changes) -> EpsilonModel:
    """timm's test_vit at 32 px: 1 CLS + 4 patch tokens of width 64."""
    return create_model("test_vit", rows, dim, family="epsilon", image_size=32,
                        options=EpsilonOptions(**{**TINY, **changes}))


def cnn(**changes) -> EpsilonModel:
    """tf_efficientnet_lite0 at 64 px: a 2 x 2 map of 1280 channels, projected to D = 32."""
    options = {"token_dim": 32, "project_tokens": True, "adapter_layer_norm": True, "encoder_heads": 4,
               "dropout": 0.0, **changes}
    return create_model("tf_efficientnet_lite0", 2, 12, family="epsilon", image_size=64, options=EpsilonOptions(**options))


@pytest.mark.parametrize("modules", ["both", "gpa", "gfp"])
@pytest.mark.parametrize("make", [vit, cnn], ids=["vit", "cnn"])
def test_output_is_one_matrix_per_image_scored_as_in_sdl(modules, make):
    torch.manual_seed(0)
    model = make(modules=modules).eval()
    config = model.config
    images = torch.randn(2, 3, config.image_size, config.image_size)
    with torch.no_grad():
        out = model(images)
        tags = torch.randn(5, config.wordvec_dim)
        scores = model.score(images, tags)
    assert out.shape == (2, config.num_rows, config.wordvec_dim)
    torch.testing.assert_close(scores, torch.einsum("bmd,cd->bmc", out, tags).max(dim=1).values)


def test_tokens_then_head_is_the_forward_and_prefix_tokens_are_optional():
    torch.manual_seed(0)
    model = vit().eval()
    images = torch.randn(2, 3, 32, 32)
    tokens = model.tokens(images)
    assert tokens.shape == (2, 1 + 4, 64) and not tokens.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(model.head_forward(tokens), model(images))
    assert vit(keep_prefix_tokens=False).tokens(images).shape == (2, 4, 64)


def test_cnn_tokens_from_the_final_map_or_an_intermediate_stage():
    final = cnn()
    assert final.tokens(torch.randn(1, 3, 64, 64)).shape == (1, 4, 1280)  # 2 x 2 map of conv_head
    inter = cnn(token_layer="intermediate:3")
    assert inter.tokens(torch.randn(1, 3, 64, 64)).shape == (1, 16, 112)  # the stride-16 stage
    assert inter.adapter.projection.in_features == 112
    with pytest.raises(ValueError, match="project_tokens"):
        create_model("test_vit", 2, 8, family="epsilon", image_size=32, options=EpsilonOptions(token_dim=16))


def test_gradients_reach_prompts_encoder_gfp_and_fuser_never_the_backbone():
    torch.manual_seed(0)
    model = vit().train()
    model(torch.randn(3, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    head = model.head
    reached = {
        "prompts": head.gpa.prompts, "encoder ffn": head.gpa.encoder.layers[0].linear1.weight,
        "encoder attention": head.gpa.encoder.layers[0].self_attn.in_proj_weight,
        "gpa key": head.gpa.key.weight, "gfp blocks": head.gfp.block_weight, "gfp mlp": head.gfp.mlp1_weight,
        "fuser": head.fuser.weight,
    }
    for name, parameter in reached.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in model.head.parameters())


def test_backbone_stays_frozen_and_out_of_the_optimizer():
    """eval mode after model.train(), no optimizer state, bit-identical weights and BatchNorm
    statistics after Adam steps with weight decay on inputs far from ImageNet's."""
    torch.manual_seed(0)
    model = cnn()
    before = copy.deepcopy(model.backbone.state_dict())
    model.train()
    assert model.training and model.head.training
    assert not any(m.training for m in model.backbone.modules())
    groups = parameter_groups(model, 4e-3)
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    assert in_optimizer == {id(p) for n, p in model.named_parameters() if not n.startswith("backbone.")}
    optimizer = torch.optim.Adam(groups, lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 64, 64) * 3 + 1).square().mean().backward()
        optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(id(p) in optimizer.state for p in model.backbone.parameters())
    # stacked biases get no weight decay, like every other bias
    no_decay = {id(p) for p in groups[0]["params"]}
    assert id(model.head.gfp.block_bias) in no_decay and id(model.head.gfp.mlp1_bias) in no_decay
    assert id(model.head.gpa.prompts) not in no_decay


def test_save_and_load_either_family_through_the_registry(tmp_path):
    torch.manual_seed(0)
    model = vit(modules="both", gfp_softmax_axis="channels").eval()
    images = torch.randn(2, 3, 32, 32)
    folder = save_model(model, tmp_path / "epsilon", extra={"epoch": 2})
    payload = json.loads((folder / CONFIG_FILE).read_text())
    assert payload["family"] == "epsilon" and payload["model"]["options"]["gfp_softmax_axis"] == "channels"
    assert saved_family(folder) == "epsilon"
    loaded = load_model(folder)
    assert isinstance(loaded, EpsilonModel) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])

    sdl = create_model("resnet18", 2, 6, image_size=32)
    sdl_folder = save_model(sdl, tmp_path / "sdl")
    assert saved_family(sdl_folder) == "sdl"
    raw = json.loads((sdl_folder / CONFIG_FILE).read_text())
    del raw["family"]  # a folder saved before families existed
    (sdl_folder / CONFIG_FILE).write_text(json.dumps(raw))
    assert type(load_model(sdl_folder)).__name__ == "SDLModel"


def test_unknown_family_and_misplaced_options_are_named():
    with pytest.raises(ValueError, match="unknown model family 'clip'.*epsilon, sdl"):
        create_model("resnet18", 2, 6, family="clip")
    with pytest.raises(ValueError, match="SDL model takes no family options"):
        create_model("resnet18", 2, 6, options=EpsilonOptions())
    with pytest.raises(ValueError, match="unknown timm backbone"):
        create_model("no_such_net", 2, 6, family="epsilon")


def test_the_papers_backbone_tag_is_timms_vit_b16_with_its_input_pipeline():
    import timm

    cfg = timm.models.get_pretrained_cfg(PAPER_BACKBONE)
    assert PAPER_BACKBONE.startswith("vit_base_patch16_224.") and timm.is_model(PAPER_BACKBONE)
    assert tuple(cfg.input_size) == (3, 224, 224) and tuple(cfg.mean) == tuple(cfg.std) == (0.5, 0.5, 0.5)


def _sample_ap(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over images of the average precision of their ranking of the tags."""
    aps = []
    for s, t in zip(scores, targets):
        hits = t[s.argsort(descending=True)]
        precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
        aps.append(float((precision * hits).sum() / hits.sum()))
    return float(np.mean(aps))


def test_tiny_model_overfits_a_tiny_multilabel_set_with_the_project_loss():
    torch.manual_seed(0)
    model = vit(rows=2, dim=8)
    images = torch.randn(16, 3, 32, 32)
    tags = nn.functional.normalize(torch.randn(6, 8), dim=1)
    targets = torch.zeros(16, 6)
    for i in range(16):  # 1-3 positives per image
        targets[i, torch.randperm(6)[: 1 + i % 3]] = 1.0
    tokens = model.tokens(images)  # the frozen part runs once
    optimizer = torch.optim.Adam(parameter_groups(model, 4e-3), lr=3e-3)

    def ap() -> float:
        with torch.no_grad():
            return _sample_ap(score_tags(model.eval().head_forward(tokens), tags), targets)

    start = ap()
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        sdl_loss(model.head_forward(tokens), tags, targets, reg_lambda=0.01, variant="paper").backward()
        optimizer.step()
    end = ap()
    assert start < 0.75, start
    assert end > 0.95, (start, end)
