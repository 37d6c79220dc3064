"""The SDL network (paper section 3.2) and its on-disk format (safetensors + JSON)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.models.pretrained import create_backbone
from sdl.models.scoring import Reduction, score_tags
from sdl.safety.atomic import atomic_write_text

ensure_torchvision_importable()
import timm  # noqa: E402  (needs the torchvision shim above on CPU-only installs)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


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


def create_model(
    backbone: str,
    num_rows: int,
    wordvec_dim: int,
    pretrained: bool | str = False,
    *,
    image_size: int | None = None,
    reduction: Reduction = "max",
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    head_bias: bool = False,
) -> SDLModel:
    """Build an SDL model on any timm backbone (a timm name, best with its pretrained tag).

    ``pretrained``: False (random init), True (ImageNet weights of the tag: from a locally
    installed package where one ships them, else timm's download), or a path to a backbone
    state dict that timm reads and loads strictly (see ``sdl.models.pretrained``).
    ``mean``/``std`` default to the backbone's timm input config (0 and 1 for TResNet: the
    released code's ``pixels / 255``).
    """
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


def save_model(model: SDLModel, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights (safetensors) and config (JSON) to ``folder``, atomically; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    partial = folder / f".{WEIGHTS_FILE}.partial"
    save_file(tensors, str(partial))
    os.replace(partial, folder / WEIGHTS_FILE)  # atomic: never a half-written weights file
    payload = {"model": dataclasses.asdict(model.config), **(extra or {})}
    atomic_write_text(folder / CONFIG_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return folder


def load_model(folder: str | Path, map_location: str | torch.device = "cpu") -> SDLModel:
    """Rebuild a model saved by :func:`save_model` (no pickle is read)."""
    folder = Path(folder)
    payload = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    raw = payload["model"]
    config = ModelConfig(**{**raw, "mean": tuple(raw["mean"]), "std": tuple(raw["std"])})
    network = timm.create_model(config.backbone, pretrained=False, num_classes=0)
    model = SDLModel(config, network)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE), device=str(map_location)))
    return model.eval()
