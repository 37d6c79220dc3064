"""Training an SDL model (paper section 4.1, "Implementation Details").

One readable loop: Adam with weight decay 3e-4 on weights only (not on biases and norm
parameters), a one-cycle cosine schedule stepped every iteration (max lr 1e-4 in the paper),
cutout and flips, AMP on CUDA, channels_last. The loss sees only the seen tags; validation
scores seen + unseen tags. A checkpoint (model, optimizer, scheduler, scaler, RNG state,
position in the epoch, config) is written atomically every epoch (and every
``checkpoint_every_steps``), and ``train`` resumes from it exactly. The best model by a
validation metric (the released code uses GZSL F1@3) is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from sdl.data.dataset import AugmentConfig, TaggedImageDataset
from sdl.inference import compute_scores, resolve_device
from sdl.losses import create_loss
from sdl.metrics import evaluate
from sdl.models import SDLModel, create_model, save_model

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
BEST_DIR = "best"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; hashed to decide whether a checkpoint resumes."""

    backbone: str = "tresnet_m"
    pretrained: bool | str = True
    num_rows: int = 7
    image_size: int = 224
    epochs: int = 7
    batch_size: int = 192
    lr: float = 1e-4
    weight_decay: float = 3e-4
    optimizer: str = "adam"
    pct_start: float = 0.1
    loss: str = "sdl"
    loss_kwargs: dict[str, Any] = field(default_factory=lambda: {"reg_lambda": 0.3})
    reduction: str = "max"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    best_metric: str = "gzsl.f1@3"
    eval_batch_size: int = 256
    checkpoint_every_steps: int = 0
    max_steps_per_epoch: int = 0  # 0: the whole epoch (a cap is for smoke tests)

    def __post_init__(self) -> None:
        positive = ("num_rows", "image_size", "epochs", "batch_size", "eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"train.optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"train.pct_start must be in (0, 1), got {self.pct_start}")
        if self.num_workers < 0 or self.checkpoint_every_steps < 0 or self.max_steps_per_epoch < 0:
            raise ValueError("train.num_workers, checkpoint_every_steps, max_steps_per_epoch must be >= 0")
        setting, _, metric = self.best_metric.partition(".")
        if setting not in ("zsl", "gzsl") or not metric:
            raise ValueError(f"train.best_metric must look like 'gzsl.f1@3', got {self.best_metric!r}")

    def fingerprint(self) -> str:
        """A hash of the settings that change what training computes (not where/how fast)."""
        ignored = {"num_workers", "device", "eval_batch_size", "checkpoint_every_steps"}
        settings = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignored}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


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

    def fingerprint(self) -> str:
        """A hash of the training inputs, so a checkpoint never resumes onto other data."""
        digest = hashlib.sha256()
        for path in self.train_paths:
            digest.update(str(path).encode())
        for array in (self.train_targets, self.seen_vectors):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()


@dataclass
class TrainResult:
    """What a run produced."""

    best_dir: Path
    best_value: float
    best_epoch: int
    history: list[dict[str, float]]
    resumed_from: int | None


class EpochOrder(Sampler[int]):
    """A seeded permutation per epoch that can start part-way (to resume inside an epoch)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        """Use the order of ``epoch`` and skip its first ``start`` samples."""
        self.epoch, self.start = epoch, start

    def __iter__(self):  # type: ignore[no-untyped-def]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        return iter(order[self.start :].tolist())

    def __len__(self) -> int:
        return self.size - self.start


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: not on biases and 1-d (norm) parameters (released code)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so CPU runs repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(device: torch.device, enabled: bool) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext(), torch.amp.GradScaler("cuda", enabled=False)
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), torch.amp.GradScaler("cuda", enabled=False)
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda", enabled=True)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    torch.save(state, partial)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a checkpoint we cannot read must not block training
        log.warning("ignoring unreadable checkpoint %s (%s); starting over", path, error)
        return None


def metric_value(results: dict[str, Any], name: str) -> float:
    """Look up 'gzsl.f1@3' in an ``sdl.metrics.evaluate`` result."""
    setting, _, metric = name.partition(".")
    try:
        return float(results[setting][metric])
    except KeyError:
        raise KeyError(f"metric {name!r} not in the validation results {sorted(results[setting])}") from None


def train(
    config: TrainConfig,
    data: TrainData,
    out_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train, validate every epoch, checkpoint, keep the best model in ``out_dir/best``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if len(data.train_paths) < 2:
        raise ValueError(f"need at least 2 training images, got {len(data.train_paths)}")

    model = create_model(
        config.backbone, config.num_rows, data.seen_vectors.shape[1], config.pretrained,
        image_size=config.image_size, reduction=config.reduction,  # type: ignore[arg-type]
    ).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = create_loss(config.loss, **_loss_kwargs(config))
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    optimizer = optimizer_class(parameter_groups(model, config.weight_decay), lr=config.lr)

    train_set = TaggedImageDataset(
        data.train_paths, data.train_targets, config.image_size, model.config.mean,
        model.config.std, augment=config.augment, seed=config.seed,
    )
    val_set = TaggedImageDataset(
        data.val_paths, data.val_targets, config.image_size, model.config.mean, model.config.std
    )
    order = EpochOrder(len(train_set), config.seed)
    drop_last = len(train_set) > config.batch_size  # BatchNorm cannot train on a batch of one
    full_steps = len(train_set) // config.batch_size if drop_last else 1
    steps_per_epoch = min(full_steps, config.max_steps_per_epoch or full_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=config.pct_start, anneal_strategy="cos",
    )
    autocast, scaler = _autocast(device, config.amp)
    seen_vectors = torch.as_tensor(data.seen_vectors, dtype=torch.float32, device=device)
    fingerprint = hashlib.sha256((config.fingerprint() + data.fingerprint()).encode()).hexdigest()

    start_epoch, start_step, history, best = 0, 0, [], {"value": -math.inf, "epoch": -1}
    resumed_from = None
    checkpoint_path = out_dir / CHECKPOINT_FILE
    checkpoint = _load_checkpoint(checkpoint_path) if resume else None
    if checkpoint is not None and checkpoint.get("fingerprint") != fingerprint:
        log.info("checkpoint %s is for other settings or data; starting over", checkpoint_path)
        checkpoint = None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        start_epoch, start_step = checkpoint["epoch"], checkpoint["step_in_epoch"]
        history, best = list(checkpoint["history"]), dict(checkpoint["best"])
        resumed_from = start_epoch
        log.info("resuming from %s: epoch %d, step %d", checkpoint_path, start_epoch + 1, start_step)

    step_model = torch.compile(model) if config.compile else model

    def checkpoint_state(epoch: int, step_in_epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "history": history, "best": best, "fingerprint": fingerprint,
            "config": json.dumps(dataclasses.asdict(config), default=str),
        }

    for epoch in range(start_epoch, config.epochs):
        first_step = start_step if epoch == start_epoch else 0
        train_set.set_epoch(epoch)
        order.set_position(epoch, first_step * config.batch_size)
        loader = DataLoader(
            train_set, batch_size=config.batch_size, sampler=order, drop_last=drop_last,
            num_workers=config.num_workers, pin_memory=device.type == "cuda",
            persistent_workers=False,
            # the loader's base seed comes from here, not torch's global generator, whose
            # state the checkpoint saves: a resumed epoch must not draw from it once more
            generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch),
        )
        model.train()
        loss_sum = torch.zeros((), device=device)
        steps_run, images_seen, started = 0, 0, time.perf_counter()
        bar = _progress_bar(progress, steps_per_epoch, first_step, f"epoch {epoch + 1}/{config.epochs}")
        log_every = 10 if bar is not None else max(1, steps_per_epoch // 5)
        for step, (images, targets) in enumerate(loader, start=first_step):
            if step >= steps_per_epoch:
                break
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                matrices = step_model(images)
            loss = loss_fn(matrices.float(), seen_vectors, targets)  # loss in float32
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach()  # no host sync per step
            steps_run += 1
            images_seen += len(images)
            if bar is not None:
                bar.update(1)
            if steps_run % log_every == 0:
                rate = images_seen / (time.perf_counter() - started)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_sum.item() / steps_run:.4f}", img_s=f"{rate:.0f}")
                else:
                    log.info(
                        "epoch %d/%d step %d/%d: loss %.4f, %.0f images/s", epoch + 1, config.epochs,
                        step + 1, steps_per_epoch, loss_sum.item() / steps_run, rate,
                    )
            if config.checkpoint_every_steps and (step + 1) % config.checkpoint_every_steps == 0:
                if step + 1 < steps_per_epoch:
                    _save_checkpoint(checkpoint_path, checkpoint_state(epoch, step + 1))
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - started
        mean_loss = loss_sum.item() / max(steps_run, 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss is {mean_loss} in epoch {epoch + 1}")

        results = _validate(model, val_set, data, config, device, progress)
        value = metric_value(results, config.best_metric)
        metrics = {
            "train_loss": mean_loss,
            "images_per_second": images_seen / elapsed if elapsed > 0 else 0.0,
            "lr": scheduler.get_last_lr()[0],
            **{f"val.{s}.{k}": float(v) for s in ("zsl", "gzsl") for k, v in results[s].items()},
        }
        history.append({"epoch": epoch + 1, **metrics})
        log.info(
            "epoch %d/%d: loss %.4f, %s %.2f, %.0f images/s",
            epoch + 1, config.epochs, mean_loss, config.best_metric, value, metrics["images_per_second"],
        )
        if value > best["value"] or best["epoch"] < 0:
            best = {"value": value, "epoch": epoch + 1}
            save_model(model, out_dir / BEST_DIR, extra={"epoch": epoch + 1, config.best_metric: value})
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, metrics)
        _save_checkpoint(checkpoint_path, checkpoint_state(epoch + 1, 0))

    return TrainResult(
        best_dir=out_dir / BEST_DIR, best_value=float(best["value"]), best_epoch=int(best["epoch"]),
        history=history, resumed_from=resumed_from,
    )


def _loss_kwargs(config: TrainConfig) -> dict[str, Any]:
    kwargs = dict(config.loss_kwargs)
    if config.loss == "sdl":
        kwargs.setdefault("reduction", config.reduction)
    return kwargs


def _validate(
    model: SDLModel, val_set: TaggedImageDataset, data: TrainData, config: TrainConfig,
    device: torch.device, progress: bool,
) -> dict[str, Any]:
    ks = [int(config.best_metric.rsplit("@", 1)[1])] if "@" in config.best_metric else [3]
    scores = compute_scores(
        model, val_set, data.all_vectors, batch_size=config.eval_batch_size,
        num_workers=config.num_workers, device=device, progress=progress, description="validation",
    )
    return evaluate(scores, data.val_targets, data.seen_index, data.unseen_index, ks)


def _progress_bar(enabled: bool, total: int, initial: int, description: str):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="step", leave=False)
