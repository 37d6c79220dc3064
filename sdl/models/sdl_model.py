"""The SDL network (paper section 3.2), the model family ``sdl`` (see ``sdl.models.registry``)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.models.pretrained import create_backbone
from sdl.models.registry import CONFIG_FILE, WEIGHTS_FILE, ModelFamily, register_family
from sdl.models.scoring import Reduction, score_tags

ensure_torchvision_importable()
import timm  # noqa: E402  (needs the torchvision shim above on CPU-only installs)

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "ModelConfig", "SDLModel", "assemble_model", "create_sdl_model"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What it takes to rebuild an SDL model: backbone (a timm name with its tag), M, d, the
    head's bias and the input pipeline it expects (square resize to ``image_size``, then
    ``(pixels / 255 - mean) / std``; the released code's is mean 0, std 1 at 224 px)."""

    backbone: str
    num_rows: int
    wordvec_dim: int
    image_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    reduction: Reduction = "max"
    head_bias: bool = False  # the released head has none (factory.py:16); a checkpoint may have one

    def __post_init__(self) -> None:
        if self.num_rows < 1:
            raise ValueError(f"num_rows (M) must be >= 1, got {self.num_rows}")
        if self.wordvec_dim < 1:
            raise ValueError(f"wordvec_dim must be >= 1, got {self.wordvec_dim}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")


class SDLModel(nn.Module):
    """Backbone -> global pooled features -> ``Linear(F, M*d)`` (no bias unless
    ``config.head_bias``) -> A of shape (B, M, d)."""

    family: ClassVar[str] = "sdl"

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.embedding = nn.Linear(
            backbone.num_features, config.num_rows * config.wordvec_dim, bias=config.head_bias
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
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    head_bias: bool = False,
) -> SDLModel:
    """Build an SDL model on any timm backbone (a timm name, best with its pretrained tag).

    ``pretrained``: False (random init), True (ImageNet weights of the tag: from a locally
    installed package where one ships them, else timm's download), or a path to a backbone
    state dict that timm reads and loads strictly (see ``sdl.models.pretrained``).
    ``mean``/``std`` default to the backbone's timm input config (0 and 1 for TResNet: the
    released code's ``pixels / 255``). SDL has no family ``options``.
    """
    if options is not None:
        raise ValueError(f"the SDL model takes no family options, got {options!r}")
    network = create_backbone(backbone, pretrained)
    return assemble_model(network, backbone, num_rows, wordvec_dim, image_size=image_size, reduction=reduction,
                          mean=mean, std=std, head_bias=head_bias)


def assemble_model(
    network: nn.Module, backbone: str, num_rows: int, wordvec_dim: int, *, image_size: int | None = None,
    reduction: Reduction = "max", mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None, head_bias: bool = False,
) -> SDLModel:
    """An SDL model around a headless timm ``network`` built for ``backbone`` (input settings
    from its timm data config unless given)."""
    data_config = timm.data.resolve_data_config({}, model=network)
    config = ModelConfig(
        backbone=backbone,
        num_rows=num_rows,
        wordvec_dim=wordvec_dim,
        image_size=image_size or int(data_config["input_size"][-1]),
        mean=tuple(float(v) for v in (mean if mean is not None else data_config["mean"])),  # type: ignore[arg-type]
        std=tuple(float(v) for v in (std if std is not None else data_config["std"])),  # type: ignore[arg-type]
        reduction=reduction,
        head_bias=head_bias,
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
