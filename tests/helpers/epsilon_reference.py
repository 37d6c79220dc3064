"""A slow, explicit float64 computation of Epsilon's eq. 1-8, to test sdl.models.epsilon_head.

Written from the paper's equations with loops over images, rows M, tokens and channels; it
reads the modules' weights but none of their forward code (not even nn.TransformerEncoder's:
the pre-norm encoder layer is spelled out too).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def d64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def softmax(values: list[torch.Tensor]) -> list[torch.Tensor]:
    top = max(float(v) for v in values)
    exps = [torch.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    mean = x.sum() / x.numel()
    var = ((x - mean) ** 2).sum() / x.numel()
    return (x - mean) / torch.sqrt(var + norm.eps) * d64(norm.weight) + d64(norm.bias)


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(queries, keys, values, heads: int, over: str = "tokens") -> list[torch.Tensor]:
    """Per query and head: logits q.k / sqrt(d_head); weights = softmax over the keys
    ("tokens"), or over the queries per key then divided by their sum over keys ("prompts");
    output = sum over keys of weight * v."""
    dim = queries[0].numel()
    hd = dim // heads
    outputs: list[list[torch.Tensor]] = [[] for _ in queries]
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        logits = [[(q[sl] * k[sl]).sum() / math.sqrt(hd) for k in keys] for q in queries]
        if over == "tokens":
            weights = [softmax(row) for row in logits]
        else:
            columns = [softmax([row[j] for row in logits]) for j in range(len(keys))]
            weights = [[columns[j][i] for j in range(len(keys))] for i in range(len(queries))]
            weights = [[w / (sum(row) + 1e-8) for w in row] for row in weights]
        for i, row in enumerate(weights):
            outputs[i].append(sum(w * v[sl] for w, v in zip(row, values, strict=True)))
    return [torch.cat(parts) for parts in outputs]


def encoder_layer(rows: list[torch.Tensor], layer: nn.TransformerEncoderLayer) -> list[torch.Tensor]:
    """Pre-norm layer: x + SelfAttn(LN1 x), then + W2 GELU(W1 LN2 x + b1) + b2."""
    dim = rows[0].numel()
    w_in, b_in = d64(layer.self_attn.in_proj_weight), d64(layer.self_attn.in_proj_bias)
    normed = [layer_norm(x, layer.norm1) for x in rows]
    q = [w_in[:dim] @ x + b_in[:dim] for x in normed]
    k = [w_in[dim : 2 * dim] @ x + b_in[dim : 2 * dim] for x in normed]
    v = [w_in[2 * dim :] @ x + b_in[2 * dim :] for x in normed]
    attended = attention(q, k, v, layer.self_attn.num_heads)
    w_out, b_out = d64(layer.self_attn.out_proj.weight), d64(layer.self_attn.out_proj.bias)
    rows = [x + w_out @ a + b_out for x, a in zip(rows, attended, strict=True)]
    out = []
    for x in rows:
        hidden = gelu(d64(layer.linear1.weight) @ layer_norm(x, layer.norm2) + d64(layer.linear1.bias))
        out.append(x + d64(layer.linear2.weight) @ hidden + d64(layer.linear2.bias))
    return out


def gpa(tokens: torch.Tensor, module) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """eq. 1-3 per image: the encoder over [GT; F], its first M rows, then GT^Q attends to F."""
    result = []
    for f in d64(tokens):
        feats = list(f)
        rows = list(d64(module.prompts)) + feats  # eq. 1
        for layer in module.encoder.layers:
            rows = encoder_layer(rows, layer)
        grouped = [layer_norm(x, module.encoder.norm) for x in rows[: module.num_rows]]  # eq. 2
        q = [d64(module.query.weight) @ g + d64(module.query.bias) for g in grouped]
        k = [d64(module.key.weight) @ x + d64(module.key.bias) for x in feats]
        v = [d64(module.value.weight) @ x + d64(module.value.bias) for x in feats]
        result.append(torch.stack(attention(q, k, v, module.heads, module.softmax_axis)))  # eq. 3
    return torch.stack(result)


def _gfp_attention(weights: list[torch.Tensor], axis: str) -> torch.Tensor:
    """eq. 5, element by element: softmax per channel over tokens, per token over channels, or over all."""
    n, dim = len(weights), weights[0].numel()
    attn = torch.zeros(n, dim, dtype=torch.float64)
    if axis == "tokens":
        for c in range(dim):
            attn[:, c] = torch.stack(softmax([weights[t][c] for t in range(n)]))
    elif axis == "channels":
        for t in range(n):
            attn[t] = torch.stack(softmax(list(weights[t])))
    else:
        attn = torch.stack(softmax([weights[t][c] for t in range(n) for c in range(dim)])).view(n, dim)
    return attn


def gfp(tokens: torch.Tensor, module) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """eq. 4-6 per image and block: FG^m; W^m = MLP(FG^m); A^m = softmax(W^m); S^m = sum FG A."""
    result = []
    for f in d64(tokens):
        rows = []
        for m in range(module.num_rows):
            j = 0 if module.mlp1_weight.shape[0] == 1 else m
            if module.block_encoding == "linear":
                blocks = [d64(module.block_weight[m]).t() @ x + d64(module.block_bias[m]) for x in f]
            else:
                blocks = list(f)
            weights = []
            for fg in blocks:  # eq. 4, token by token
                hidden = gelu(d64(module.mlp1_weight[j]).t() @ fg + d64(module.mlp1_bias[j]))
                weights.append(d64(module.mlp2_weight[j]).t() @ hidden + d64(module.mlp2_bias[j]))
            attn = _gfp_attention(weights, module.softmax_axis)
            rows.append(sum(blocks[t] * attn[t] for t in range(len(blocks))))  # eq. 6
        result.append(torch.stack(rows))
    return torch.stack(result)


def fuse(gos: torch.Tensor | None, grs: torch.Tensor | None, fuser: nn.Linear) -> torch.Tensor:
    """eq. 7-8 row by row: S_m = W [GoS_m; GrS_m] + b."""
    batch, rows = (gos if gos is not None else grs).shape[:2]  # type: ignore[union-attr]
    out = torch.zeros(batch, rows, fuser.out_features, dtype=torch.float64)
    for b in range(batch):
        for m in range(rows):
            parts = [x[b, m] for x in (gos, grs) if x is not None]
            bias = d64(fuser.bias) if fuser.bias is not None else 0.0
            out[b, m] = d64(fuser.weight) @ torch.cat(parts) + bias
    return out
