"""The frozen backbone's tokens, computed once and kept on disk (``train.<d>.token_cache``).

Epsilon trains only its head over a frozen backbone, so each image's backbone tokens are the
same every epoch unless the image is augmented. With a cache the training step and the
validation read the tokens (``TokenHead``) instead of running the backbone; the cache holds
un-augmented tokens, which is why the config refuses a cache with augmentation on.

Layout (in the train stage's working state, ``--state``): ``token_cache/<split>.npy`` (N, T, C)
in float32 or float16, beside ``<split>.json`` with the key it was built for: the backbone's
weights (a digest of its tensors), its token options, the input pipeline, the dtype and the
image list. A cache of another key is rebuilt. Building writes ``<split>.npy.partial`` and
records the rows done, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sdl.data.dataset import TaggedImageDataset
from sdl.safety.atomic import write_json

log = logging.getLogger(__name__)

CACHE_DIR = "token_cache"
FLUSH_EVERY_BATCHES = 8


class TokenHead(nn.Module):
    """The step's module with a cache: cached tokens (B, N, C) -> S, through the model's head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.head_forward(tokens)


class TokenDataset(Dataset):
    """Rows of a cache file with their targets; the file is opened (memory-mapped) lazily, in
    the process that reads it, so loader workers do not copy it."""

    def __init__(self, path: Path, targets: np.ndarray | None) -> None:
        self.path = path
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float32)
        self._rows: np.ndarray | None = None
        self.epoch = 0
        self.length = int(json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["shape"][0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # no augmentation: every epoch reads the same tokens

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rows is None:
            self._rows = np.load(self.path, mmap_mode="r")
        tokens = torch.from_numpy(np.array(self._rows[index]))
        target = self.targets[index] if self.targets is not None else torch.empty(0)
        return tokens, target

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None}


def cache_key(model: nn.Module, paths: Sequence[Path], dtype: str) -> dict[str, Any]:
    """What a cache's tokens depend on: the backbone's weights and token options, the input
    pipeline, the stored dtype and the images, in order."""
    weights = hashlib.sha256()
    for name, tensor in model.backbone.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    images = hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()
    config = model.config
    options = dataclasses.asdict(config.options)
    token_options = {k: options[k] for k in ("token_layer", "keep_prefix_tokens", "backbone_kwargs")}
    return {
        "backbone": config.backbone, "weights": weights.hexdigest(), "tokens": token_options,
        "image_size": config.image_size, "mean": list(config.mean), "std": list(config.std),
        "dtype": dtype, "images": images, "count": len(paths),
    }


def cached_tokens(
    model: nn.Module, paths: Sequence[Path], folder: Path, split: str, dtype: str, *,
    batch_size: int, num_workers: int, device: torch.device, progress: bool = False,
) -> Path:
    """The cache file of ``split``'s images, built (or finished) here unless one with the same
    key is there; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    final, meta = folder / f"{split}.npy", folder / f"{split}.json"
    key = cache_key(model, paths, dtype)
    if final.is_file() and meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("key") == key:
        log.info("token cache %s: up to date (%d images)", final, len(paths))
        return final
    shape = _build(model, paths, folder / f"{split}.npy.partial", key, dtype, batch_size, num_workers, device, progress)
    os.replace(folder / f"{split}.npy.partial", final)
    write_json(meta, {"key": key, "shape": list(shape)})
    (folder / f"{split}.progress.json").unlink(missing_ok=True)
    log.info("token cache %s: %d x %s %s, %.1f MB", final, shape[0], shape[1:], dtype, final.stat().st_size / 1e6)
    return final


def _build(
    model: nn.Module, paths: Sequence[Path], partial: Path, key: dict[str, Any], dtype: str,
    batch_size: int, num_workers: int, device: torch.device, progress: bool,
) -> tuple[int, ...]:
    """Fill ``partial`` with the tokens of ``paths``, from where an interrupted build stopped."""
    config = model.config
    images = TaggedImageDataset(paths, None, config.image_size, config.mean, config.std)
    progress_file = partial.with_name(partial.name.replace(".npy.partial", ".progress.json"))
    done = 0
    if partial.is_file() and progress_file.is_file():
        record = json.loads(progress_file.read_text(encoding="utf-8"))
        done = int(record["rows"]) if record.get("key") == key else 0
    start = done - done % batch_size
    subset = torch.utils.data.Subset(images, range(start, len(images)))
    # its own generator: building a cache must not draw from torch's global one (the run's seed)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    rows: np.ndarray | None = None
    model.eval()
    if done:
        rows = np.lib.format.open_memmap(partial, mode="r+")
        log.info("token cache %s: resuming at image %d of %d", partial.name, start, len(images))
    bar = _bar(progress, len(loader), partial.name)
    for batch_index, (batch, _) in enumerate(loader):
        tokens = model.tokens(batch.to(device)).float().cpu().numpy()
        if rows is None:
            rows = np.lib.format.open_memmap(partial, mode="w+", dtype=np.dtype(dtype), shape=(len(images), *tokens.shape[1:]))
        first = start + batch_index * batch_size
        rows[first : first + len(tokens)] = tokens
        if (batch_index + 1) % FLUSH_EVERY_BATCHES == 0:
            rows.flush()
            write_json(progress_file, {"key": key, "rows": first + len(tokens)})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    assert rows is not None, "a cache of no images"
    rows.flush()
    shape = rows.shape
    del rows
    return tuple(int(s) for s in shape)


def _bar(enabled: bool, total: int, name: str):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"token cache {name}", unit="batch", leave=False)
