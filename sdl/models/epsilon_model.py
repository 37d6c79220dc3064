"""Epsilon (Liu, Guo, Guo, Lu, AAAI 2024): a frozen backbone, then the GPA + GFP head, fused.

The model family ``epsilon`` (see ``sdl.models.registry``). Image tokens F (B, N, D) come from
a pre-trained timm backbone that never trains: Figure 2 says it "is frozen and cannot be
updated". (The implementation details call the training "completely end-to-end", against the
baselines' "multi-stage training"; we follow Figure 2: one training stage, for the head only.)
The head (``sdl.models.epsilon_head``, eq. 1-8) turns the tokens into S (B, M, d_w), scored
as in SDL, so unseen and new tags need no retraining.

The backbone is frozen three ways: its parameters have ``requires_grad=False`` (so they get no
gradient and no optimizer state), :meth:`EpsilonModel.train` keeps it in eval mode (BatchNorm
statistics and dropout fixed), and :meth:`EpsilonModel.tokens` runs it under
``torch.no_grad()``. (Not inference mode: its outputs feed the head's autograd graph.)
``tokens`` is the cacheable frozen part, ``head_forward`` the trainable part.

The loss (eq. 9-13) is ``sdl.losses``' SDL loss, not a copy: tau_jk (eq. 9) is SDL's u_pn over
the max-over-rows scores; alpha = 1/(|T||T-bar|) (eq. 10) is its per-pair normalisation
(``variant: paper``); omega (eq. 11, "a new weight like (Ben-Cohen et al. 2021)", written
1 + sum var(Y_i)) is read as SDL's semantic-diversity weight over the positive tags' word
vectors; L_reg (eq. 12) is SDL's row-variance term and eq. 13 SDL's (1 - lambda) / lambda mix,
with the paper's lambda = 0.3 (Figure 3b).

The paper's backbone is "the pre-trained ViT-B/16 (Dosovitskiy et al. 2020)", no tag named. We
propose ``vit_base_patch16_224.orig_in21k_ft_in1k``: the weights released with that cited
paper (ImageNet-21k pre-training, fine-tuned on ImageNet-1k; timm's plain
``vit_base_patch16_224`` until 2021). Today's timm default for the name is
``.augreg2_in21k_ft_in1k`` (what ``pretrained=True`` gave a 2023 timm), and ``.orig_in21k`` is
the 21k-only checkpoint of the same paper; all three take mean = std = 0.5 at 224 px.
ImageNet-21k's classes overlap NUS-WIDE's unseen labels, as for every ImageNet-21k baseline.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.config.epsilon import EpsilonOptions, parse_token_layer
from sdl.models.epsilon_head import EpsilonHead
from sdl.models.pretrained import create_backbone
from sdl.models.registry import ModelFamily, register_family
from sdl.models.scoring import Reduction, score_tags

ensure_torchvision_importable()
import timm  # noqa: E402  (needs the torchvision shim above on CPU-only installs)

PAPER_BACKBONE = "vit_base_patch16_224.orig_in21k_ft_in1k"


@dataclasses.dataclass(frozen=True)
class EpsilonConfig:
    """What it takes to rebuild an Epsilon model: backbone, M, d_w, the input pipeline, the
    tag-score reduction (eq. 9: the max over rows) and the architecture options."""

    backbone: str
    num_rows: int
    wordvec_dim: int
    image_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    reduction: Reduction = "max"
    options: EpsilonOptions = dataclasses.field(default_factory=EpsilonOptions)

    def __post_init__(self) -> None:
        for name in ("num_rows", "wordvec_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EpsilonConfig:
        """The config from its JSON form (``model.json``)."""
        return cls(**{**raw, "mean": tuple(raw["mean"]), "std": tuple(raw["std"]),
                      "options": EpsilonOptions(**raw.get("options", {}))})


class TokenAdapter(nn.Module):
    """Backbone tokens (B, N, C) -> (B, N, D): a Linear C -> D and a LayerNorm, each optional.

    Not in the paper (its ViT tokens are used as they are); needed for CNN maps, where C != D.
    """

    def __init__(self, in_dim: int, options: EpsilonOptions) -> None:
        super().__init__()
        if not options.project_tokens and options.token_dim not in (None, in_dim):
            raise ValueError(
                f"the backbone's tokens are {in_dim} wide, epsilon.token_dim is {options.token_dim}: "
                "set epsilon.project_tokens: true"
            )
        self.out_dim = int(options.token_dim if options.project_tokens else in_dim)  # type: ignore[arg-type]
        self.projection: nn.Module = nn.Linear(in_dim, self.out_dim) if options.project_tokens else nn.Identity()
        self.norm: nn.Module = nn.LayerNorm(self.out_dim) if options.adapter_layer_norm else nn.Identity()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.projection(tokens))


@torch.no_grad()
def backbone_tokens(backbone: nn.Module, images: torch.Tensor, options: EpsilonOptions) -> torch.Tensor:
    """Tokens (B, N, C) of a frozen timm backbone per ``options.token_layer``, under no_grad."""
    index = parse_token_layer(options.token_layer)
    if index is None:
        features = backbone.forward_features(images)
    else:
        features = backbone.forward_intermediates(images, indices=[index], intermediates_only=True, stop_early=True)[0]
    if features.dim() == 4:  # a CNN (or NCHW intermediate) map: (B, C, H, W) -> (B, H*W, C)
        return features.flatten(2).transpose(1, 2)
    prefix = int(getattr(backbone, "num_prefix_tokens", 0))
    if not options.keep_prefix_tokens and prefix:
        features = features[:, prefix:]  # drop the ViT's CLS / register tokens
    return features


class EpsilonModel(nn.Module):
    """Frozen timm backbone -> tokens -> :class:`TokenAdapter` -> :class:`EpsilonHead` -> S."""

    family: ClassVar[str] = "epsilon"

    def __init__(self, config: EpsilonConfig, backbone: nn.Module, backbone_width: int) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.adapter = TokenAdapter(backbone_width, config.options)
        self.head = EpsilonHead(config.options, config.num_rows, config.wordvec_dim, self.adapter.out_dim)

    def train(self, mode: bool = True) -> EpsilonModel:
        super().train(mode)
        self.backbone.eval()  # frozen: always in eval mode
        return self

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen part: images (B, 3, H, W) -> backbone tokens (B, N, C); cacheable."""
        return backbone_tokens(self.backbone, images, self.config.options)

    def head_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The trainable part: backbone tokens (B, N, C) -> S (B, M, d_w). Tokens of any float
        type (a float16 cache, a bf16 autocast backbone) are read in float32 (the head's
        matmuls still run under the caller's autocast)."""
        return self.head(self.adapter(tokens.float()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head_forward(self.tokens(images))

    def score(self, images: torch.Tensor, tag_vectors: torch.Tensor) -> torch.Tensor:
        """Scores (B, C) of any tags (seen, unseen or new): the max over the M rows (eq. 9)."""
        return score_tags(self(images), tag_vectors, self.config.reduction)


def _backbone(config: EpsilonConfig) -> nn.Module:
    return timm.create_model(config.backbone, pretrained=False, num_classes=0, **config.options.backbone_kwargs)


def _token_width(backbone: nn.Module, config: EpsilonConfig) -> int:
    probe = torch.zeros(1, 3, config.image_size, config.image_size)
    return int(backbone_tokens(backbone.eval(), probe, config.options).shape[-1])  # C, whatever the layer


def build_epsilon_model(config: EpsilonConfig) -> EpsilonModel:
    """An Epsilon model of ``config`` with random weights (a saved state dict is loaded after)."""
    backbone = _backbone(config)
    return EpsilonModel(config, backbone, _token_width(backbone, config))


def create_epsilon_model(
    backbone: str,
    num_rows: int,
    wordvec_dim: int,
    pretrained: bool | str = False,
    *,
    image_size: int | None = None,
    reduction: Reduction = "max",
    options: EpsilonOptions | None = None,
) -> EpsilonModel:
    """Build an Epsilon model over a headless timm ``backbone`` (see the module docstring for the
    paper's), random weights unless ``pretrained`` (as ``sdl.models.create_model``). The input
    pipeline (size, mean, std) is the backbone's pretrained config unless ``image_size`` is given;
    a ViT (a model with a ``patch_embed``) is built for that size."""
    options = options or EpsilonOptions()
    if not timm.is_model(backbone):
        raise ValueError(f"unknown timm backbone {backbone!r}")
    network = timm.create_model(backbone, pretrained=False, num_classes=0, **options.backbone_kwargs)
    data_config = timm.data.resolve_data_config({}, model=network)
    size = image_size or int(data_config["input_size"][-1])
    patch_embed = getattr(network, "patch_embed", None)
    if patch_embed is not None and "img_size" not in options.backbone_kwargs and tuple(patch_embed.img_size) != (size, size):
        options = dataclasses.replace(options, backbone_kwargs={**options.backbone_kwargs, "img_size": size})
        network = timm.create_model(backbone, pretrained=False, num_classes=0, **options.backbone_kwargs)
    if pretrained:  # the weights, strictly, into the network built for this size
        network = create_backbone(backbone, pretrained, **options.backbone_kwargs)
    config = EpsilonConfig(
        backbone=backbone, num_rows=num_rows, wordvec_dim=wordvec_dim, image_size=size,
        mean=tuple(float(v) for v in data_config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in data_config["std"]),  # type: ignore[arg-type]
        reduction=reduction, options=options,
    )
    return EpsilonModel(config, network, _token_width(network, config))


FAMILY = register_family(
    ModelFamily("epsilon", create=create_epsilon_model, config_from_dict=EpsilonConfig.from_dict, build=build_epsilon_model)
)
