"""The data a training run takes and the state it carries: :class:`TrainData` (images,
targets, tag vectors), :class:`TrainState` (position, history, best epoch) and
:class:`TrainResult`."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class TrainData:
    """Training images with seen-tag targets; validation images with targets over all tags."""

    train_paths: Sequence[Path]
    train_targets: np.ndarray  # (N, S) over the seen tags
    seen_vectors: np.ndarray  # (S, d)
    val_paths: Sequence[Path]
    val_targets: np.ndarray  # (Nv, C) over seen + unseen tags
    all_vectors: np.ndarray  # (C, d), seen tags first
    seen_index: np.ndarray  # columns of the seen tags in all_vectors
    unseen_index: np.ndarray
    # the evaluation protocol the best epoch is chosen under (``evaluate.<d>.protocol``,
    # sdl.eval.metrics); val_targets are 1/-1/0 where the manifest has verified negatives
    val_protocol: str = "sdl"

    def fingerprint(self) -> str:
        """A hash of the training inputs, so a checkpoint never resumes onto other data.

        A validation protocol other than the default is part of it: the best epoch of a resumed
        run must be chosen under one protocol throughout. The default adds nothing, so the
        checkpoints of runs under it keep their fingerprint.
        """
        digest = hashlib.sha256()
        for path in self.train_paths:
            digest.update(str(path).encode())
        for array in (self.train_targets, self.seen_vectors):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        if self.val_protocol != "sdl":
            digest.update(f"val_protocol={self.val_protocol}".encode())
        return digest.hexdigest()


@dataclass
class TrainState:
    """What changes as training goes: the position (epochs done, steps done in the current
    epoch), the per-epoch history, the best epoch so far, and the running loss of an epoch
    resumed part-way."""

    epoch: int = 0
    step_in_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"value": -math.inf, "epoch": -1})
    resumed_from: int | None = None
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    loss_steps: int = 0


@dataclass
class TrainResult:
    """What a run produced."""

    best_dir: Path
    best_value: float
    best_epoch: int
    history: list[dict[str, float]]
    resumed_from: int | None
