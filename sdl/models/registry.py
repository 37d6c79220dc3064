"""Model families by name, and the one on-disk format they share (safetensors + JSON).

A family is one file that registers itself (``register_family(ModelFamily("sdl", ...))``,
as timm registers its models): ``sdl`` (``sdl_model``) and ``epsilon`` (``epsilon_model``).
:func:`create_model` builds one by family name; :func:`save_model` records the family in
``model.json`` beside the config, and :func:`load_model` rebuilds whichever family a folder
holds (a folder without one, saved before families existed, is SDL). Evaluation, the gate,
the pyfunc and ``sdl tag`` only use what every family's model has (:class:`TaggingModel`):
``model(images) -> (B, M, d)`` and a ``config`` with the input pipeline and the reduction.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sdl.safety.atomic import atomic_write_text

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
DEFAULT_FAMILY = "sdl"


class TaggingConfig(Protocol):
    """What every family's config tells its users: the input pipeline and the scoring."""

    backbone: str
    num_rows: int
    wordvec_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    reduction: str


class TaggingModel(Protocol):
    """A model of any family: images (B, 3, H, W) -> per-image matrices (B, M, d)."""

    family: str
    config: TaggingConfig

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...
    def score(self, images: torch.Tensor, tag_vectors: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ModelFamily:
    """A family's builders: ``create(backbone, num_rows, wordvec_dim, pretrained, *, image_size,
    reduction, options)`` for training, and ``config_from_dict`` + ``build`` (an untrained model
    of a saved config, its weights loaded afterwards) for loading."""

    name: str
    create: Callable[..., nn.Module]
    config_from_dict: Callable[[dict[str, Any]], Any]
    build: Callable[[Any], nn.Module]


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    known = FAMILIES.get(family.name)
    if known is not None and known.create.__qualname__ != family.create.__qualname__:
        raise ValueError(f"model family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def create_model(
    backbone: str,
    num_rows: int,
    wordvec_dim: int,
    pretrained: bool | str = False,
    *,
    family: str = DEFAULT_FAMILY,
    image_size: int | None = None,
    reduction: str = "max",
    options: Any = None,
    **family_kwargs: Any,
) -> nn.Module:
    """A model of ``family`` on a timm ``backbone`` with M = ``num_rows`` rows of ``wordvec_dim``.

    ``pretrained``: False (random init), True (ImageNet weights: from a locally installed package
    where one ships them, else timm's download), or a path to a backbone state dict.
    ``options``: the family's own settings (Epsilon: ``sdl.config.EpsilonOptions``);
    ``family_kwargs``: what else the family's builder takes (SDL: ``mean``, ``std``, ``head_bias``).
    """
    return get_family(family).create(
        backbone, num_rows, wordvec_dim, pretrained, image_size=image_size, reduction=reduction, options=options,
        **family_kwargs,
    )


def save_model(model: nn.Module, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights (safetensors) and family + config (JSON) to ``folder``, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    partial = folder / f".{WEIGHTS_FILE}.partial"
    save_file(tensors, str(partial))
    os.replace(partial, folder / WEIGHTS_FILE)  # atomic: never a half-written weights file
    family = str(getattr(model, "family", DEFAULT_FAMILY))
    payload = {"family": family, "model": dataclasses.asdict(model.config), **(extra or {})}
    atomic_write_text(folder / CONFIG_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return folder


def saved_family(folder: str | Path) -> str:
    """The family of the model saved in ``folder``."""
    payload = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    return str(payload.get("family", DEFAULT_FAMILY))


def load_model(folder: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model`, whatever its family (no pickle is read)."""
    folder = Path(folder)
    payload = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    family = get_family(str(payload.get("family", DEFAULT_FAMILY)))
    model = family.build(family.config_from_dict(payload["model"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE), device=str(map_location)))
    return model.eval()
