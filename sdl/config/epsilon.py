"""Epsilon's architecture options (``train.<dataset>.epsilon`` in params.yaml), torch-free.

Epsilon (Liu, Guo, Guo, Lu, AAAI 2024, "Methods", eq. 1-8, Figure 2) puts two trainable
branches over the tokens F (B, N, D) of a frozen backbone: Group Prompts Aggregation (GPA,
eq. 1-3) and Global Forward Propagation (GFP, eq. 4-6), fused by a Linear (eq. 7-8) into the
per-image matrix S (B, M, d_w) that SDL's scoring reads (eq. 9). The paper fixes M (8 is its
best, Figure 3a; ``train.<d>.num_rows``), the order and shapes of eq. 1-8 and a Linear fuser.
Everything else below is a choice the paper leaves open; each field says what it does not
fix and what the default is. ``sdl.models.epsilon_head`` / ``epsilon_model`` build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MODULES = ("both", "gpa", "gfp")
GPA_SOFTMAX_AXES = ("tokens", "prompts")
GFP_SOFTMAX_AXES = ("tokens", "channels", "all")
BLOCK_ENCODINGS = ("linear", "identity")


def parse_token_layer(token_layer: str) -> int | None:
    """``"final"`` -> None; ``"intermediate:<i>"`` -> i (a timm ``forward_intermediates`` index)."""
    if token_layer == "final":
        return None
    kind, _, index = token_layer.partition(":")
    if kind != "intermediate" or not index.lstrip("-").isdigit():
        raise ValueError(f"token_layer must be 'final' or 'intermediate:<int>', not {token_layer!r}")
    return int(index)


@dataclass(frozen=True)
class EpsilonOptions:
    """The choices eq. 1-8 leave open, with the defaults used unless params say otherwise."""

    modules: Literal["both", "gpa", "gfp"] = "both"
    """Table 3's ablations: both branches, or GPA / GFP alone. The paper does not say what
    replaces a missing branch; here the fuser then reads D features instead of 2D."""

    token_layer: str = "final"
    """Which backbone output is F. Paper: "the corresponding feature F_i of the image" of a
    ViT-B/16, no layer named. ``"final"`` = ``forward_features`` (a ViT's final-norm tokens; a
    CNN's last map flattened to H*W tokens), ``"intermediate:<i>"`` = timm's
    ``forward_intermediates`` stage i (later stages skipped)."""

    keep_prefix_tokens: bool = True
    """Whether a ViT's CLS (and register) tokens are among the N tokens. The paper says only
    "N is the number of image tokens"; the CLS token is the backbone's trained global summary
    and both branches can learn to weight it down."""

    token_dim: int | None = None
    """D, the width the head works at. None: the backbone's own width (768 for ViT-B/16, as the
    paper). Another D needs ``project_tokens``."""

    project_tokens: bool = False
    """A trainable Linear (C -> D) on the tokens before both branches: not in the paper (its ViT
    tokens are used as they are), needed for CNN maps whose C is large (EfficientNet-Lite0: 1280)."""

    adapter_layer_norm: bool = False
    """A LayerNorm after that projection (CNN maps are not normalised like ViT tokens)."""

    encoder_layers: int = 1
    """Depth of eq. 2's "Encoder of Transformer model" (trainable); the paper gives no depth."""

    encoder_heads: int = 8
    """Its attention heads (not given; 8 divides 768 and 128)."""

    mlp_ratio: float = 4.0
    """Its feed-forward width / D (not given; 4 as in ViT). Layers are pre-norm with GELU and a
    final LayerNorm, as in ViT: the paper does not say."""

    dropout: float = 0.1
    """Dropout inside the encoder (not given; PyTorch's default)."""

    gpa_heads: int = 1
    """Heads of eq. 3's cross-attention (GT^Q the query, F key and value). Eq. 3 is one softmax,
    so one head; it shows no projections and no scale: here learned Q/K/V Linears (D -> D) and
    logits scaled by 1/sqrt(D / heads), no output projection (the fuser follows)."""

    gpa_softmax_axis: Literal["tokens", "prompts"] = "tokens"
    """Eq. 3's softmax axis, not given. ``"tokens"``: each prompt's weights over the N tokens sum
    to 1 (standard cross-attention); ``"prompts"``: per token over the M prompts, then a
    weighted mean over tokens (Slot-Attention style; one reading of "a clustering")."""

    gfp_block_encoding: Literal["linear", "identity"] = "linear"
    """How F is "encoded into M feature blocks" FG^m (not said): ``"linear"`` = one Linear D -> D
    per block; ``"identity"`` = FG^m = F for every m (only the MLPs then differ)."""

    gfp_hidden: int | None = None
    """Hidden width of eq. 4's MLP, Linear(D, H) -> GELU -> Linear(H, D) (depth, width and
    activation not given; A^m is N x D, so it must end at D). None: H = D."""

    gfp_share_mlp: bool = False
    """One MLP for all M blocks, or one each (default: the paper's "personalized global
    weights" and "multi-head approach")."""

    gfp_softmax_axis: Literal["tokens", "channels", "all"] = "tokens"
    """Eq. 5's softmax axis, not given. ``"tokens"``: per channel over the N tokens, so eq. 6's
    sum over tokens is a convex pooling per channel ("the weight representation of each feature
    point in the feature map"); ``"channels"``: per token over D; ``"all"``: jointly over N x D."""

    fuse_bias: bool = True
    """Whether eq. 8's Linear has a bias (the paper writes only "Linear")."""

    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``timm.create_model`` arguments for the backbone (e.g. ``drop_path_rate``). A ViT
    gets ``img_size`` = ``train.<d>.image_size`` without being told."""

    def __post_init__(self) -> None:
        for name in ("encoder_layers", "encoder_heads", "gpa_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"epsilon.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("token_dim", "gfp_hidden"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"epsilon.{name} must be >= 1 or null, got {value}")
        choices = {"modules": MODULES, "gpa_softmax_axis": GPA_SOFTMAX_AXES,
                   "gfp_softmax_axis": GFP_SOFTMAX_AXES, "gfp_block_encoding": BLOCK_ENCODINGS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"epsilon.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.project_tokens and self.token_dim is None:
            raise ValueError("epsilon.project_tokens needs epsilon.token_dim (the D to project to)")
        if not self.mlp_ratio > 0:
            raise ValueError(f"epsilon.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"epsilon.dropout must be in [0, 1), got {self.dropout}")
        try:
            parse_token_layer(self.token_layer)
        except ValueError as error:
            raise ValueError(f"epsilon.{error}") from None
