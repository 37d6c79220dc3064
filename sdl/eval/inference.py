"""Batched inference: per-image matrices and tag scores for a whole dataset."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sdl.models.scoring import score_tags


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def compute_scores(
    model: nn.Module,
    dataset: Dataset,
    tag_vectors: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    description: str = "scoring",
) -> np.ndarray:
    """Scores (N, C) float32 of every image of ``dataset`` for every tag vector (any vocabulary).

    ``model``: any family's (``sdl.models.TaggingModel``): batches -> (B, M, d) matrices, and a
    ``config.reduction``; the batches are images, or whatever the model reads (cached tokens)."""
    device = resolve_device(device) if isinstance(device, str) else device
    model = model.to(device).eval()
    vectors = torch.as_tensor(np.asarray(tag_vectors), dtype=torch.float32, device=device)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, desc=description, unit="batch", leave=False)
    chunks = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    for images, _ in iterator:
        images = images.to(device, non_blocking=True)
        with autocast:
            matrices = model(images)
        chunks.append(score_tags(matrices.float(), vectors, model.config.reduction).cpu())
    if not chunks:
        return np.zeros((0, len(vectors)), dtype=np.float32)
    return torch.cat(chunks).numpy()
