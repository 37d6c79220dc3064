"""Epsilon's trainable head (Liu et al., AAAI 2024, "Methods", eq. 1-8): tokens -> S (B, M, d_w).

Two branches read the tokens F (B, N, D) of the frozen backbone:

* Group Prompts Aggregation (GPA, eq. 1-3): M learnable prompts GT and F go through a trainable
  Transformer encoder; its first M outputs GT^Q attend to F (query GT^Q, key/value F): GrS.
* Global Forward Propagation (GFP, eq. 4-6): M feature blocks FG^m, each through its own MLP to
  weights W^m, a softmax to A^m, and S^m = sum over tokens of FG^m (.) A^m: GoS.

The semantic fuser (eq. 7-8) concatenates (GoS, GrS) to (B, M, 2D) and a Linear maps it to
S (B, M, d_w), scored as in SDL (``sdl.models.scoring``; eq. 9 uses the same max over rows).
What the paper leaves open (encoder depth and heads, eq. 3's projections, how FG^m is encoded,
the GFP MLP, both softmax axes) is :class:`sdl.config.epsilon.EpsilonOptions`, documented there.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from sdl.config.epsilon import EpsilonOptions


def _linear_init_(weight: torch.Tensor, bias: torch.Tensor, fan_in: int) -> None:
    """nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for stacked weights."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    nn.init.uniform_(bias, -bound, bound)


class GroupPromptsAggregation(nn.Module):
    """GPA, eq. 1-3: [GT; F] -> encoder -> GT^Q -> cross-attention on F -> GrS (B, M, D)."""

    def __init__(self, options: EpsilonOptions, num_rows: int, token_dim: int) -> None:
        super().__init__()
        if token_dim % options.encoder_heads or token_dim % options.gpa_heads:
            raise ValueError(
                f"token width D = {token_dim} must be divisible by epsilon.encoder_heads "
                f"({options.encoder_heads}) and epsilon.gpa_heads ({options.gpa_heads})"
            )
        self.num_rows = num_rows
        self.heads = options.gpa_heads
        self.softmax_axis = options.gpa_softmax_axis
        # GT: M learnable group prompts, shared by all images (eq. 1's GT_i is GT broadcast).
        self.prompts = nn.Parameter(torch.empty(num_rows, token_dim))
        nn.init.trunc_normal_(self.prompts, std=0.02)  # ViT's init for learned tokens
        layer = nn.TransformerEncoderLayer(
            token_dim, options.encoder_heads, dim_feedforward=int(round(options.mlp_ratio * token_dim)),
            dropout=options.dropout, activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, options.encoder_layers, norm=nn.LayerNorm(token_dim), enable_nested_tensor=False
        )
        self.query = nn.Linear(token_dim, token_dim)
        self.key = nn.Linear(token_dim, token_dim)
        self.value = nn.Linear(token_dim, token_dim)

    def aggregate_prompts(self, tokens: torch.Tensor) -> torch.Tensor:
        """GT^Q (B, M, D): the first M encoder outputs over [GT; F]."""
        prompts = self.prompts.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        encoder_input = torch.cat([prompts, tokens], dim=1)  # eq. 1: Input = [GT; F]
        return self.encoder(encoder_input)[:, : self.num_rows]  # eq. 2: Encoder(Input)[:M, :]

    def cross_attend(self, grouped: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """GrS (B, M, D) = softmax(F^K . GT^Q) . F^V (eq. 3), split into ``heads`` heads."""
        batch, rows, dim = grouped.shape
        head_dim = dim // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, heads, L, D/heads)
            return x.view(batch, -1, self.heads, head_dim).transpose(1, 2)

        queries = split(self.query(grouped))
        keys, values = split(self.key(tokens)), split(self.value(tokens))
        # eq. 3: A_c = F^K . GT^Q, scaled by 1/sqrt(d_k) (our choice): (B, heads, M, N).
        logits = queries @ keys.transpose(-2, -1) / math.sqrt(head_dim)
        if self.softmax_axis == "tokens":
            weights = logits.softmax(dim=-1)  # over the N tokens, per prompt
        else:  # over the M prompts, per token; then normalised over tokens (a weighted mean)
            weights = logits.softmax(dim=-2)
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-8)
        attended = weights @ values  # eq. 3: softmax(A_c) . F^V
        return attended.transpose(1, 2).reshape(batch, rows, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.cross_attend(self.aggregate_prompts(tokens), tokens)


class GlobalForwardPropagation(nn.Module):
    """GFP, eq. 4-6, all M blocks at once: F -> FG^m -> MLP -> softmax -> sum: GoS (B, M, D).

    The M blocks' weights are stacked on a leading axis and applied with batched einsums, so
    there is no Python loop over M. Memory: a few (B, M, N, max(D, H)) activations. (Under a
    softmax over tokens the MLP's last bias is a per-channel constant that the softmax ignores:
    it gets a zero gradient, as an attention key bias does.)
    """

    def __init__(self, options: EpsilonOptions, num_rows: int, token_dim: int) -> None:
        super().__init__()
        rows, dim = num_rows, token_dim
        hidden = options.gfp_hidden or token_dim
        mlps = 1 if options.gfp_share_mlp else rows
        self.num_rows = rows
        self.softmax_axis = options.gfp_softmax_axis
        self.block_encoding = options.gfp_block_encoding
        if self.block_encoding == "linear":  # one Linear D -> D per block: FG^m = F W_m + b_m
            self.block_weight = nn.Parameter(torch.empty(rows, dim, dim))
            self.block_bias = nn.Parameter(torch.empty(rows, dim))
            _linear_init_(self.block_weight, self.block_bias, dim)
        self.mlp1_weight = nn.Parameter(torch.empty(mlps, dim, hidden))
        self.mlp1_bias = nn.Parameter(torch.empty(mlps, hidden))
        self.mlp2_weight = nn.Parameter(torch.empty(mlps, hidden, dim))
        self.mlp2_bias = nn.Parameter(torch.empty(mlps, dim))
        _linear_init_(self.mlp1_weight, self.mlp1_bias, dim)
        _linear_init_(self.mlp2_weight, self.mlp2_bias, hidden)

    def feature_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """FG (B, M, N, D): the M feature blocks "encoded" from F (paper: before eq. 4)."""
        if self.block_encoding == "identity":
            return tokens.unsqueeze(1).expand(-1, self.num_rows, -1, -1)
        blocks = torch.einsum("bnd,mde->bmne", tokens, self.block_weight)
        return blocks + self.block_bias[None, :, None, :]

    def block_weights(self, blocks: torch.Tensor) -> torch.Tensor:
        """W (B, M, N, D) = MLP_m(FG^m) (eq. 4), each block through its own MLP."""
        rows = self.num_rows
        weight1, weight2 = self.mlp1_weight.expand(rows, -1, -1), self.mlp2_weight.expand(rows, -1, -1)
        bias1, bias2 = self.mlp1_bias.expand(rows, -1), self.mlp2_bias.expand(rows, -1)
        hidden = F.gelu(torch.einsum("bmnd,mdh->bmnh", blocks, weight1) + bias1[None, :, None, :])
        return torch.einsum("bmnh,mhd->bmnd", hidden, weight2) + bias2[None, :, None, :]

    def attention(self, weights: torch.Tensor) -> torch.Tensor:
        """A (B, M, N, D) = softmax(W) (eq. 5) over the configured axis."""
        if self.softmax_axis == "tokens":
            return weights.softmax(dim=2)
        if self.softmax_axis == "channels":
            return weights.softmax(dim=3)
        return weights.flatten(2).softmax(dim=-1).view_as(weights)  # "all": jointly over N x D

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        blocks = self.feature_blocks(tokens)
        attention = self.attention(self.block_weights(blocks))
        return (blocks * attention).sum(dim=2)  # eq. 6: S^m = Sum_n(FG^m (.) A^m), (B, M, D)


class EpsilonHead(nn.Module):
    """Tokens F (B, N, D) -> S (B, M, d_w): GPA and/or GFP (per ``modules``), then the fuser."""

    def __init__(self, options: EpsilonOptions, num_rows: int, wordvec_dim: int, token_dim: int) -> None:
        super().__init__()
        self.token_dim = token_dim
        self.gpa = GroupPromptsAggregation(options, num_rows, token_dim) if options.modules != "gfp" else None
        self.gfp = GlobalForwardPropagation(options, num_rows, token_dim) if options.modules != "gpa" else None
        branches = 2 if options.modules == "both" else 1
        # eq. 8: the semantic fuser, a Linear from the concatenated semantics to d_w.
        self.fuser = nn.Linear(branches * token_dim, wordvec_dim, bias=options.fuse_bias)

    def fuse(self, global_semantics: torch.Tensor | None, group_semantics: torch.Tensor | None) -> torch.Tensor:
        """S (B, M, d_w) = Linear(Concat(GoS, GrS)) (eq. 7-8); a missing branch is left out."""
        parts = [part for part in (global_semantics, group_semantics) if part is not None]
        return self.fuser(torch.cat(parts, dim=-1))  # eq. 7: GS (B, M, 2D), GoS first

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[-1] != self.token_dim:
            raise ValueError(f"tokens must be (B, N, {self.token_dim}), got {tuple(tokens.shape)}")
        group_semantics = self.gpa(tokens) if self.gpa is not None else None  # GrS, eq. 1-3
        global_semantics = self.gfp(tokens) if self.gfp is not None else None  # GoS, eq. 4-6
        return self.fuse(global_semantics, group_semantics)
