"""Losses for SDL training: the SDL loss (paper, eq. 1-5), Fast0Tag, a registry, Table 3 ablations.

Only torch is needed here (no prefect/dvc). Pick a loss by name with
``create_loss("sdl", reg_lambda=0.3, variant="per_positive")``; ``TABLE3_ABLATIONS`` holds the
ablation columns.
"""

from sdl.losses.ablations import TABLE3_ABLATIONS, TABLE3_PUBLISHED_MAP
from sdl.losses.pairwise import DEFAULT_MAX_PAIR_ELEMENTS, pairwise_softplus_sum
from sdl.losses.registry import LOSSES, create_loss, register_loss
from sdl.losses.sdl_loss import (
    VARIANT_ALIASES,
    VARIANTS,
    Fast0TagLoss,
    SDLLoss,
    Variant,
    canonical_variant,
    fast0tag_loss,
    row_variance_regularizer,
    sdl_loss,
    semantic_diversity_weight,
)

__all__ = [
    "DEFAULT_MAX_PAIR_ELEMENTS",
    "LOSSES",
    "TABLE3_ABLATIONS",
    "TABLE3_PUBLISHED_MAP",
    "VARIANTS",
    "VARIANT_ALIASES",
    "Fast0TagLoss",
    "SDLLoss",
    "Variant",
    "canonical_variant",
    "create_loss",
    "fast0tag_loss",
    "pairwise_softplus_sum",
    "register_loss",
    "row_variance_regularizer",
    "sdl_loss",
    "semantic_diversity_weight",
]
