"""The SDL network (paper section 3.2), the model family ``sdl`` (see ``sdl.models.registry``)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.models.pretrained import load_pretrained_backbone
from sdl.models.registry import CONFIG_FILE, WEIGHTS_FILE, ModelFamily, register_family
from sdl.models.scoring import Reduction, score_tags

ensure_torchvision_importable()
import timm  # noqa: E402  (needs the torchvision shim above on CPU-only installs)

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "ModelConfig", "SDLModel", "create_sdl_model"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What it takes to rebuild an SDL model: backbone, M, d and the input pipeline it expects."""

    backbone: str
    num_rows: int
    wordvec_dim: int
    image_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    reduction: Reduction = "max"

    def __post_init__(self) -> None:
        if self.num_rows < 1:
            raise ValueError(f"num_rows (M) must be >= 1, got {self.num_rows}")
        if self.wordvec_dim < 1:
            raise ValueError(f"wordvec_dim must be >= 1, got {self.wordvec_dim}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")


class SDLModel(nn.Module):
    """Backbone -> global pooled features -> ``Linear(F, M*d, bias=False)`` -> A of shape (B, M, d)."""

    family: ClassVar[str] = "sdl"

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.embedding = nn.Linear(
            backbone.num_features, config.num_rows * config.wordvec_dim, bias=False
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        flat = self.embedding(features)
        # The released code views the output as (B, d, M) (``x.view(B, 300, -1)``); we keep
        # that memory layout so its checkpoints' embedding weights load as they are.
        return flat.view(-1, self.config.wordvec_dim, self.config.num_rows).transpose(1, 2)

    def score(self, images: torch.Tensor, tag_vectors: torch.Tensor) -> torch.Tensor:
        """Scores (B, C) of any tag vectors (seen, unseen or new) for a batch of images."""
        return score_tags(self(images), tag_vectors, self.config.reduction)


def create_sdl_model(
    backbone: str,
    num_rows: int,
    wordvec_dim: int,
    pretrained: bool | str = False,
    *,
    image_size: int | None = None,
    reduction: Reduction = "max",
    options: Any = None,
) -> SDLModel:
    """Build an SDL model on any timm backbone.

    ``pretrained``: False (random init), True (ImageNet weights: from a locally installed
    package where one ships them, else timm's download), or a path to a backbone state dict
    (safetensors or a torch file, loaded with ``weights_only=True``). SDL has no ``options``.
    """
    if options is not None:
        raise ValueError(f"the SDL model takes no family options, got {options!r}")
    if backbone not in timm.list_models():
        raise ValueError(f"unknown timm backbone {backbone!r}")
    network = timm.create_model(backbone, pretrained=False, num_classes=0)
    if pretrained:
        load_pretrained_backbone(network, backbone, pretrained)
    data_config = timm.data.resolve_data_config({}, model=network)
    config = ModelConfig(
        backbone=backbone,
        num_rows=num_rows,
        wordvec_dim=wordvec_dim,
        image_size=image_size or int(data_config["input_size"][-1]),
        mean=tuple(float(v) for v in data_config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in data_config["std"]),  # type: ignore[arg-type]
        reduction=reduction,
    )
    return SDLModel(config, network)


def config_from_dict(raw: dict[str, Any]) -> ModelConfig:
    """A :class:`ModelConfig` from its JSON form (``model.json``)."""
    return ModelConfig(**{**raw, "mean": tuple(raw["mean"]), "std": tuple(raw["std"])})


def build_sdl_model(config: ModelConfig) -> SDLModel:
    """An SDL model of ``config`` with random weights (a saved state dict is loaded after)."""
    return SDLModel(config, timm.create_model(config.backbone, pretrained=False, num_classes=0))


FAMILY = register_family(
    ModelFamily("sdl", create=create_sdl_model, config_from_dict=config_from_dict, build=build_sdl_model)
)
