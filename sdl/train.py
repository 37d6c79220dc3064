"""Training an SDL model (paper section 4.1, "Implementation Details").

One readable loop: Adam with weight decay 3e-4 on weights only (not on biases and norm
parameters), a one-cycle cosine schedule stepped every iteration (max lr 1e-4 in the paper),
cutout and flips, AMP on CUDA, channels_last. The loss sees only the seen tags; validation
scores seen + unseen tags. A checkpoint (model, optimizer, scheduler, scaler, RNG state,
position in the epoch, config) is written atomically every epoch (and every
``checkpoint_every_steps``), and ``train`` resumes from it exactly. The best model by a
validation metric (the released code uses GZSL F1@3) is kept.

Speed (see BENCHMARKS.md, "Training"): bf16 autocast where the GPU supports it (fp16 with a
gradient scaler otherwise), channels_last, optional ``torch.compile``, fused Adam and cuDNN
autotuning on CUDA, pinned-memory loaders whose workers persist across epochs, and the
host-to-device copy of the next batch on a side stream while the current step computes. The
step reads nothing back to the host: the running loss stays on the device, and the progress
bar / log lines show it through an asynchronous copy started at the previous log point
(every 10 steps with a bar, 5 times an epoch without), so they lag by one log interval and
never wait for the GPU; the epoch's mean loss is read once, at the end of the epoch. On CUDA
the SDL loss is given the training set's largest label count as ``max_positives``, so its
shapes are fixed and it does not synchronise either (see sdl.losses.pairwise).

Multi-GPU (``sdl.distributed``): under torchrun every rank trains on its shard of each global
batch of ``batch_size`` images (``batch_size / world size`` each, ``EpochOrder`` with a rank),
DDP averages the gradients, BatchNorm is synchronised on CUDA, and rank 0 alone validates,
keeps the best model, writes checkpoints and calls ``on_epoch_end``. A checkpoint resumes
under any world size that divides ``batch_size``.
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
from torch.utils.data import DataLoader, Dataset, Sampler

from sdl import distributed
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
    # How, not what (left out of the fingerprint): processes (GPUs) per node under torchrun,
    # an integer or "auto" (one per visible GPU); batch_size stays the global batch.
    nproc_per_node: int | str = 1
    pin_memory: bool = True  # page-locked loader batches (CUDA only)
    persistent_workers: bool = True  # loader workers live across epochs (num_workers > 0)
    prefetch_factor: int = 2  # batches each worker prepares ahead (num_workers > 0; shared memory!)

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
        if self.nproc_per_node != "auto" and (
            isinstance(self.nproc_per_node, bool) or not isinstance(self.nproc_per_node, int) or self.nproc_per_node < 1
        ):
            raise ValueError(f"train.nproc_per_node must be an integer >= 1 or 'auto', got {self.nproc_per_node!r}")
        if self.prefetch_factor < 1:
            raise ValueError(f"train.prefetch_factor must be >= 1, got {self.prefetch_factor}")
        setting, _, metric = self.best_metric.partition(".")
        if setting not in ("zsl", "gzsl") or not metric:
            raise ValueError(f"train.best_metric must look like 'gzsl.f1@3', got {self.best_metric!r}")

    def fingerprint(self) -> str:
        """A hash of the settings that change what training computes (not where/how fast)."""
        ignored = {
            "num_workers", "device", "eval_batch_size", "checkpoint_every_steps", "nproc_per_node",
            "pin_memory", "persistent_workers", "prefetch_factor",
        }
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
    """A seeded permutation per epoch that can start part-way (to resume inside an epoch).

    With ``world_size`` > 1 each rank takes every ``world_size``-th sample of the permutation,
    from ``start + rank``. A global batch of B = b * world_size images is then split exactly:
    step s of rank r holds positions ``start + s*B + r + world_size*j`` (j < b), and the union
    over the ranks of step s is positions ``[start + s*B, start + (s+1)*B)``, the batch that a
    single process with batch size B trains on at step s.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.size, self.seed = size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        """Use the order of ``epoch`` and skip its first ``start`` samples (global count)."""
        self.epoch, self.start = epoch, start

    def __iter__(self):  # type: ignore[no-untyped-def]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        return iter(order[self.start + self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return len(range(self.start + self.rank, self.size, self.world_size))


class _EpochIndices(Sampler[tuple[int, int]]):
    """``EpochOrder``'s indices paired with its epoch, for workers that outlive an epoch."""

    def __init__(self, order: EpochOrder) -> None:
        self.order = order

    def __iter__(self):  # type: ignore[no-untyped-def]
        epoch = self.order.epoch
        return ((epoch, index) for index in self.order)

    def __len__(self) -> int:
        return len(self.order)


class _EpochDataset(Dataset):
    """Items addressed by (epoch, index): persistent workers hold their own copy of the
    dataset, so the epoch (which selects the augmentation draws) travels with each index."""

    def __init__(self, dataset: TaggedImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _device_batches(batches, device: torch.device, channels_last: bool):  # type: ignore[no-untyped-def]
    """Batches on ``device``. On CUDA the next batch is copied on a side stream while the
    current one computes (the loader pins it), so the step does not wait for the copy."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if device.type != "cuda":
        for images, targets in batches:
            yield images.to(device).contiguous(memory_format=memory_format), targets.to(device)
        return
    stream = torch.cuda.Stream(device)

    def stage(batch):  # type: ignore[no-untyped-def]
        if batch is None:
            return None
        images, targets = batch
        with torch.cuda.stream(stream):
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            targets = targets.to(device, non_blocking=True)
        return images, targets

    iterator = iter(batches)
    staged = stage(next(iterator, None))
    while staged is not None:
        current = torch.cuda.current_stream(device)
        current.wait_stream(stream)
        images, targets = staged
        images.record_stream(current)  # the allocator must not reuse them before the step ends
        targets.record_stream(current)
        staged = stage(next(iterator, None))
        yield images, targets


class _LossMeter:
    """The running sum of the training loss, kept on the device (no host sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total = torch.zeros((), device=device)
        self.steps = 0
        self._host = torch.zeros((), pin_memory=device.type == "cuda")
        self._event: torch.cuda.Event | None = None
        self._host_steps = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach()
        self.steps += 1

    def peek(self) -> float | None:
        """The mean loss for display, without waiting for the GPU: on CUDA, the value copied at
        the previous call (if the copy has landed), while a copy of the current sum starts."""
        if self.device.type != "cuda":
            return self.total.item() / max(self.steps, 1)
        value = None
        if self._event is not None and self._event.query():
            value = self._host.item() / max(self._host_steps, 1)
        if self._event is None or self._event.query():
            self._host.copy_(self.total, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
            self._host_steps = self.steps
        return value

    def mean(self, context: distributed.DistContext) -> float:
        """The epoch's mean loss over every rank's images (one host sync, one all-reduce)."""
        total = context.all_reduce_mean_(self.total.clone())
        return total.item() / max(self.steps, 1)


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
    """Train, validate every epoch, checkpoint, keep the best model in ``out_dir/best``.

    Under torchrun (``WORLD_SIZE`` > 1) this is one rank of a data-parallel run: see
    ``sdl.distributed``. Rank 0 alone writes ``out_dir`` and calls ``on_epoch_end``; every
    rank returns the same result.
    """
    device = resolve_device(config.device)
    with distributed.process_group(device) as context:
        return _train(config, data, Path(out_dir), distributed.rank_device(device, context), context,
                      resume=resume, progress=progress and context.is_main, on_epoch_end=on_epoch_end)


def _train(
    config: TrainConfig,
    data: TrainData,
    out_dir: Path,
    device: torch.device,
    context: distributed.DistContext,
    *,
    resume: bool,
    progress: bool,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    if len(data.train_paths) < 2:
        raise ValueError(f"need at least 2 training images, got {len(data.train_paths)}")
    world = context.world_size
    if config.batch_size % world:
        raise ValueError(f"train.batch_size {config.batch_size} is not divisible by the {world} processes")
    if world > 1 and len(data.train_paths) < config.batch_size:
        raise ValueError(
            f"{world} processes need at least batch_size = {config.batch_size} training images, "
            f"got {len(data.train_paths)}"
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: autotune the convolutions

    with _main_first(context):  # rank 0 fetches pretrained weights (if any) before the others
        model = create_model(
            config.backbone, config.num_rows, data.seen_vectors.shape[1], config.pretrained,
            image_size=config.image_size, reduction=config.reduction,  # type: ignore[arg-type]
        )
    if context.enabled and distributed.has_batchnorm(model):
        if device.type == "cuda":
            # statistics of the global batch: N ranks train the function one process would
            model = distributed.convert_sync_batchnorm(model)  # type: ignore[assignment]
        else:
            log.warning("BatchNorm statistics are per rank on the CPU (SyncBatchNorm needs a GPU)")
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = create_loss(config.loss, **loss_kwargs(config, data, device))
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    fused = {"fused": True} if device.type == "cuda" else {}  # one kernel for all parameters
    optimizer = optimizer_class(parameter_groups(model, config.weight_decay), lr=config.lr, **fused)

    train_set = TaggedImageDataset(
        data.train_paths, data.train_targets, config.image_size, model.config.mean,
        model.config.std, augment=config.augment, seed=config.seed,
    )
    val_set = TaggedImageDataset(
        data.val_paths, data.val_targets, config.image_size, model.config.mean, model.config.std
    )
    order = EpochOrder(len(train_set), config.seed, context.rank, world)
    drop_last = len(train_set) > config.batch_size or world > 1  # BatchNorm cannot train on a batch of one
    full_steps = len(train_set) // config.batch_size if len(train_set) > config.batch_size else 1
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
    checkpoint = _load_checkpoint(checkpoint_path) if resume else None  # every rank reads it
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
    # A rank that cannot read the checkpoint must not train other weights than rank 0.
    if context.enabled and context.broadcast_object(resumed_from) != resumed_from:
        raise RuntimeError(f"rank {context.rank} and rank 0 disagree on resuming from {checkpoint_path}")

    step_model: nn.Module = model
    if context.enabled:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    if config.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]

    def checkpoint_state(epoch: int, step_in_epoch: int, meter: _LossMeter | None = None) -> dict[str, Any]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "history": history, "best": best, "fingerprint": fingerprint,
            "config": json.dumps(dataclasses.asdict(config), default=str),
            # mid-epoch: the epoch's running loss, so its mean covers the steps before a resume
            # (under DDP rank 0's, an approximation of the other ranks' own sums)
            "loss_sum": meter.total.detach().cpu() if meter is not None else torch.zeros(()),
            "loss_steps": meter.steps if meter is not None else 0,
        }

    workers = config.num_workers
    loader = DataLoader(
        _EpochDataset(train_set), batch_size=config.batch_size // world, sampler=_EpochIndices(order),
        drop_last=drop_last, num_workers=workers, pin_memory=config.pin_memory and device.type == "cuda",
        persistent_workers=config.persistent_workers and workers > 0,
        prefetch_factor=config.prefetch_factor if workers > 0 else None,
        # the loader's base seed comes from here, not torch's global generator, whose
        # state the checkpoint saves: a resumed run must not draw from it once more
        # (augmentation is seeded per sample, so the workers' seeds change nothing)
        generator=torch.Generator().manual_seed(config.seed * 1_000_003),
    )
    for epoch in range(start_epoch, config.epochs):
        first_step = start_step if epoch == start_epoch else 0
        train_set.set_epoch(epoch)
        order.set_position(epoch, first_step * config.batch_size)
        model.train()
        meter = _LossMeter(device)
        if epoch == start_epoch and first_step and checkpoint is not None:
            meter.total += checkpoint.get("loss_sum", torch.zeros(())).to(device)
            meter.steps = int(checkpoint.get("loss_steps", 0))
        images_seen, started = 0, time.perf_counter()
        bar = _progress_bar(progress, steps_per_epoch, first_step, f"epoch {epoch + 1}/{config.epochs}")
        log_every = 10 if bar is not None else max(1, steps_per_epoch // 5)
        batches = _device_batches(loader, device, config.channels_last)
        for step, (images, targets) in enumerate(batches, start=first_step):
            if step >= steps_per_epoch:
                break
            with autocast:
                matrices = step_model(images)
            loss = loss_fn(matrices.float(), seen_vectors, targets)  # loss in float32
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            meter.add(loss)  # stays on the device: no host sync per step
            images_seen += len(images) * world
            if bar is not None:
                bar.update(1)
            if context.is_main and meter.steps % log_every == 0:
                _log_progress(bar, meter, images_seen / (time.perf_counter() - started),
                              epoch, config.epochs, step, steps_per_epoch)
            if config.checkpoint_every_steps and (step + 1) % config.checkpoint_every_steps == 0:
                if step + 1 < steps_per_epoch and context.is_main:
                    _save_checkpoint(checkpoint_path, checkpoint_state(epoch, step + 1, meter))
        batches.close()
        if bar is not None:
            bar.close()
        mean_loss = meter.mean(context)  # waits for the epoch's last step
        elapsed = time.perf_counter() - started
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss is {mean_loss} in epoch {epoch + 1}")

        record: dict[str, Any] = {}
        if context.is_main:
            try:
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
                    "epoch %d/%d: loss %.4f, %s %.2f, %.0f images/s", epoch + 1, config.epochs, mean_loss,
                    config.best_metric, value, metrics["images_per_second"],
                )
                if value > best["value"] or best["epoch"] < 0:
                    best = {"value": value, "epoch": epoch + 1}
                    save_model(model, out_dir / BEST_DIR, extra={"epoch": epoch + 1, config.best_metric: value})
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, metrics)
                _save_checkpoint(checkpoint_path, checkpoint_state(epoch + 1, 0))
                record = {"history": history, "best": best}
            except BaseException as error:
                context.broadcast_object({"error": f"{type(error).__name__}: {error}"})  # free the others
                raise
        # the other ranks wait here for rank 0's validation, best model and checkpoint
        record = context.broadcast_object(record)
        if "error" in record:
            raise RuntimeError(f"rank 0 failed at the end of epoch {epoch + 1}: {record['error']}")
        history, best = list(record["history"]), dict(record["best"])
    del loader  # stops persistent workers

    return TrainResult(
        best_dir=out_dir / BEST_DIR, best_value=float(best["value"]), best_epoch=int(best["epoch"]),
        history=history, resumed_from=resumed_from,
    )


@contextlib.contextmanager
def _main_first(context: distributed.DistContext):  # type: ignore[no-untyped-def]
    """Rank 0 runs the block first (downloads, caches), then the other ranks."""
    if context.enabled and not context.is_main:
        context.barrier()
    yield
    if context.enabled and context.is_main:
        context.barrier()


def _log_progress(bar, meter: _LossMeter, rate: float, epoch: int, epochs: int, step: int, steps: int) -> None:  # type: ignore[no-untyped-def]
    loss = meter.peek()  # no wait for the GPU: the value of the previous log point on CUDA
    shown = "…" if loss is None else f"{loss:.4f}"
    if bar is not None:
        bar.set_postfix(loss=shown, img_s=f"{rate:.0f}")
    else:
        log.info("epoch %d/%d step %d/%d: loss %s, %.0f images/s", epoch + 1, epochs, step + 1, steps, shown, rate)


def loss_kwargs(config: TrainConfig, data: TrainData, device: torch.device) -> dict[str, Any]:
    """The loss's keyword arguments: ``config.loss_kwargs``, the reduction, and on CUDA the
    largest label count of the training set as ``max_positives`` (the sync-free loss)."""
    kwargs = dict(config.loss_kwargs)
    if config.loss == "sdl":
        kwargs.setdefault("reduction", config.reduction)
    if config.loss in ("sdl", "fast0tag") and device.type == "cuda" and len(data.train_targets):
        kwargs.setdefault("max_positives", int((np.asarray(data.train_targets) == 1).sum(axis=1).max()))
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
