"""Training a model of either family (``train.<d>.model``: SDL, paper section 4.1,
"Implementation Details", or Epsilon, whose frozen backbone leaves only the head to train).

One readable loop: Adam with weight decay (3e-4 for SDL) on weights only (not on biases and norm
parameters), a one-cycle cosine schedule stepped every iteration (max lr 1e-4 in the paper) or
Epsilon's step schedule (``sdl.training.schedules``), cutout and flips, AMP on CUDA,
channels_last. For Epsilon with ``token_cache`` the step reads the backbone's cached tokens
instead of images (``sdl.training.token_cache``); everything else is the same code. The loss
sees only the seen tags; validation scores seen + unseen tags. A checkpoint (model, optimizer, scheduler, scaler, RNG state,
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

Multi-GPU (``sdl.training.distributed``): under torchrun every rank trains on its shard of each global
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sdl.config.metric_names import MetricName
from sdl.config.training import TrainConfig
from sdl.eval.inference import compute_scores, resolve_device
from sdl.eval.metrics import evaluate
from sdl.losses import create_loss
from sdl.models import save_model
from sdl.safety.errors import UserError
from sdl.training import distributed
from sdl.training.checkpoints import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from sdl.training.device import LossMeter, autocast_and_scaler, device_batches
from sdl.training.sampling import EpochDataset, EpochIndices, EpochOrder
from sdl.training.schedules import make_scheduler
from sdl.training.setup import (
    check_data,
    datasets,
    loss_kwargs,
    new_model,
    parameter_groups,
    place_model,
    seed_everything,
)
from sdl.training.state import TrainData, TrainResult, TrainState
from sdl.training.token_cache import TokenHead

__all__ = [
    "BEST_DIR", "CHECKPOINT_FILE", "EpochOrder", "TrainConfig", "TrainData", "loss_kwargs", "parameter_groups",
    "seed_everything", "train",
]

log = logging.getLogger(__name__)


class TrainingDiverged(UserError, FloatingPointError):
    """The training loss is not finite (too high a learning rate, or bad inputs)."""

BEST_DIR = "best"


@dataclass
class Trainer:
    """Everything :func:`build` sets up for a run: the model (and its DDP / compiled form for
    the step), the loss, the optimiser and schedule, the data, and where checkpoints go."""

    config: TrainConfig
    data: TrainData
    out_dir: Path
    device: torch.device
    context: distributed.DistContext
    model: nn.Module
    step_model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: contextlib.AbstractContextManager
    train_set: Dataset  # images (TaggedImageDataset, or DecodedImageDataset: ``data_path``), or cached tokens
    val_set: Dataset
    cached: bool
    order: EpochOrder
    loader: DataLoader
    steps_per_epoch: int
    seen_vectors: torch.Tensor
    fingerprint: str

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    @property
    def input_model(self) -> nn.Module:
        """The module that reads the loader's batches: the model, or its head over cached tokens."""
        return TokenHead(self.model) if self.cached else self.model

    def checkpoint(self, state: TrainState, epoch: int, step_in_epoch: int, meter: LossMeter | None = None) -> dict[str, Any]:
        """The checkpoint of position (``epoch``, ``step_in_epoch``): self-contained (model,
        optimiser, schedule, scaler, RNG, history, best, config) and keyed by the fingerprint."""
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "history": state.history, "best": state.best, "fingerprint": self.fingerprint,
            "config": json.dumps(dataclasses.asdict(self.config), default=str),
            # mid-epoch: the epoch's running loss, so its mean covers the steps before a resume
            # (under DDP rank 0's, an approximation of the other ranks' own sums)
            "loss_sum": meter.total.detach().cpu() if meter is not None else torch.zeros(()),
            "loss_steps": meter.steps if meter is not None else 0,
        }


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
    ``sdl.training.distributed``. Rank 0 alone writes ``out_dir`` and calls ``on_epoch_end``;
    every rank returns the same result.
    """
    device = resolve_device(config.device)
    with distributed.process_group(device) as context:
        trainer = build(config, data, Path(out_dir), distributed.rank_device(device, context), context, progress)
        state = resume_state(trainer) if resume else TrainState()
        check_same_start(trainer, state)
        trainer.step_model = parallel_step_model(trainer)
        show = progress and context.is_main
        for epoch in range(state.epoch, config.epochs):
            mean_loss, rate = train_epoch(trainer, state, epoch, show)
            end_epoch(trainer, state, epoch, mean_loss, rate, show, on_epoch_end)
        del trainer.loader  # stops persistent workers
        return TrainResult(
            best_dir=trainer.out_dir / BEST_DIR, best_value=float(state.best["value"]),
            best_epoch=int(state.best["epoch"]), history=state.history, resumed_from=state.resumed_from,
        )


def build(
    config: TrainConfig, data: TrainData, out_dir: Path, device: torch.device, context: distributed.DistContext,
    progress: bool = False,
) -> Trainer:
    """Seed, check the data, build the model, loss, optimiser, schedule and loaders."""
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    check_data(config, data, context.world_size)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: autotune the convolutions
    with _main_first(context):  # rank 0 fetches pretrained weights (if any) before the others
        model = new_model(config, data.seen_vectors.shape[1])
    model = place_model(model, config, device, context)
    loss_fn = create_loss(config.loss, **loss_kwargs(config, data, device))
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    fused = {"fused": True} if device.type == "cuda" else {}  # one kernel for all parameters
    optimizer = optimizer_class(parameter_groups(model, config.weight_decay), lr=config.lr, **fused)
    with _main_first(context):  # rank 0 builds a token cache (if any), the others read it
        train_set, val_set = datasets(config, data, model, out_dir, device, progress and context.is_main)
    world = context.world_size
    order = EpochOrder(len(train_set), config.seed, context.rank, world)
    full_steps = len(train_set) // config.batch_size if len(train_set) > config.batch_size else 1
    steps_per_epoch = min(full_steps, config.max_steps_per_epoch or full_steps)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    autocast, scaler = autocast_and_scaler(device, config.amp)
    workers = config.num_workers
    loader = DataLoader(
        EpochDataset(train_set), batch_size=config.batch_size // world, sampler=EpochIndices(order),
        # BatchNorm cannot train on a batch of one
        drop_last=len(train_set) > config.batch_size or world > 1,
        num_workers=workers, pin_memory=config.pin_memory and device.type == "cuda",
        persistent_workers=config.persistent_workers and workers > 0,
        prefetch_factor=config.prefetch_factor if workers > 0 else None,
        # the loader's base seed comes from here, not torch's global generator, whose
        # state the checkpoint saves: a resumed run must not draw from it once more
        # (augmentation is seeded per sample, so the workers' seeds change nothing)
        generator=torch.Generator().manual_seed(config.seed * 1_000_003),
    )
    return Trainer(
        config=config, data=data, out_dir=out_dir, device=device, context=context, model=model, step_model=model,
        loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler, scaler=scaler, autocast=autocast,
        train_set=train_set, val_set=val_set, cached=config.token_cache is not None, order=order, loader=loader,
        steps_per_epoch=steps_per_epoch,
        seen_vectors=torch.as_tensor(data.seen_vectors, dtype=torch.float32, device=device),
        fingerprint=hashlib.sha256((config.fingerprint() + data.fingerprint()).encode()).hexdigest(),
    )


def resume_state(trainer: Trainer) -> TrainState:
    """Load the checkpoint of the same settings and data, if any, into the trainer; return the
    position to go on from (a fresh state without one). Every rank reads it."""
    path = trainer.checkpoint_path
    checkpoint = load_checkpoint(path)
    if checkpoint is not None and checkpoint.get("fingerprint") != trainer.fingerprint:
        log.info("checkpoint %s is for other settings or data; starting over", path)
        checkpoint = None
    if checkpoint is None:
        return TrainState()
    trainer.model.load_state_dict(checkpoint["model"])
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    trainer.scheduler.load_state_dict(checkpoint["scheduler"])
    trainer.scaler.load_state_dict(checkpoint["scaler"])
    torch.set_rng_state(checkpoint["torch_rng"])
    state = TrainState(
        epoch=checkpoint["epoch"], step_in_epoch=checkpoint["step_in_epoch"], history=list(checkpoint["history"]),
        best=dict(checkpoint["best"]), resumed_from=checkpoint["epoch"],
        loss_sum=checkpoint.get("loss_sum", torch.zeros(())), loss_steps=int(checkpoint.get("loss_steps", 0)),
    )
    log.info("resuming from %s: epoch %d, step %d", path, state.epoch + 1, state.step_in_epoch)
    return state


def check_same_start(trainer: Trainer, state: TrainState) -> None:
    """A rank that cannot read the checkpoint must not train other weights than rank 0."""
    context = trainer.context
    if context.enabled and context.broadcast_object(state.resumed_from) != state.resumed_from:
        raise RuntimeError(f"rank {context.rank} and rank 0 disagree on resuming from {trainer.checkpoint_path}")


def parallel_step_model(trainer: Trainer) -> nn.Module:
    """The module the step calls (the model, or its head over cached tokens): DDP around it in a
    distributed run, compiled if asked."""
    step_model: nn.Module = trainer.input_model
    if trainer.context.enabled:
        step_model = nn.parallel.DistributedDataParallel(
            step_model, device_ids=[trainer.device.index] if trainer.device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    if trainer.config.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]
    return step_model


def train_epoch(trainer: Trainer, state: TrainState, epoch: int, progress: bool) -> tuple[float, float]:
    """One epoch of steps (from ``state.step_in_epoch`` when resumed part-way); return its mean
    loss over every rank and the images per second. Mid-epoch checkpoints on rank 0."""
    config, steps = trainer.config, trainer.steps_per_epoch
    first_step = state.step_in_epoch if epoch == state.epoch else 0
    trainer.train_set.set_epoch(epoch)
    trainer.order.set_position(epoch, first_step * config.batch_size)
    trainer.model.train()
    meter = LossMeter(trainer.device)
    if first_step and state.loss_steps:
        meter.total += state.loss_sum.to(trainer.device)
        meter.steps = state.loss_steps
    images_seen, started = 0, time.perf_counter()
    bar = _progress_bar(progress, steps, first_step, f"epoch {epoch + 1}/{config.epochs}")
    log_every = 10 if bar is not None else max(1, steps // 5)
    normalize = (trainer.model.config.mean, trainer.model.config.std)  # uint8 batches (data_path: uint8_cache)
    batches = device_batches(trainer.loader, trainer.device, config.channels_last, normalize)
    for step, (images, targets) in enumerate(batches, start=first_step):
        if step >= steps:
            break
        with trainer.autocast:
            matrices = trainer.step_model(images)
        loss = trainer.loss_fn(matrices.float(), trainer.seen_vectors, targets)  # loss in float32
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        trainer.scheduler.step()
        meter.add(loss)  # stays on the device: no host sync per step
        images_seen += len(images) * trainer.context.world_size
        if bar is not None:
            bar.update(1)
        if trainer.context.is_main and meter.steps % log_every == 0:
            _log_progress(bar, meter, images_seen / (time.perf_counter() - started), epoch, config.epochs, step, steps)
        every = config.checkpoint_every_steps
        if every and (step + 1) % every == 0 and step + 1 < steps and trainer.context.is_main:
            save_checkpoint(trainer.checkpoint_path, trainer.checkpoint(state, epoch, step + 1, meter))
    batches.close()
    if bar is not None:
        bar.close()
    mean_loss = meter.mean(trainer.context)  # waits for the epoch's last step
    elapsed = time.perf_counter() - started
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(
            f"training loss is {mean_loss} in epoch {epoch + 1}: lower train.<dataset>.lr, or check the word vectors"
        )
    state.step_in_epoch, state.loss_sum, state.loss_steps = 0, torch.zeros(()), 0
    return mean_loss, images_seen / elapsed if elapsed > 0 else 0.0


def end_epoch(
    trainer: Trainer, state: TrainState, epoch: int, mean_loss: float, images_per_second: float, progress: bool,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
) -> None:
    """Rank 0 validates, keeps the best model, calls ``on_epoch_end`` and checkpoints; the other
    ranks wait for its record (or its error) and take it."""
    config, context = trainer.config, trainer.context
    record: dict[str, Any] = {}
    if context.is_main:
        try:
            metric = MetricName.parse(config.best_metric)
            results = _validate(trainer, progress)
            value = metric.value(results)
            metrics = {
                "train_loss": mean_loss, "images_per_second": images_per_second,
                "lr": trainer.scheduler.get_last_lr()[0],
                **{f"val.{s}.{k}": float(v) for s in ("zsl", "gzsl") for k, v in results[s].items()},
            }
            state.history.append({"epoch": epoch + 1, **metrics})
            log.info("epoch %d/%d: loss %.4f, %s %.2f, %.0f images/s", epoch + 1, config.epochs, mean_loss,
                     config.best_metric, value, images_per_second)
            if value > state.best["value"] or state.best["epoch"] < 0:
                state.best = {"value": value, "epoch": epoch + 1}
                save_model(trainer.model, trainer.out_dir / BEST_DIR, extra={"epoch": epoch + 1, config.best_metric: value})
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, metrics)
            save_checkpoint(trainer.checkpoint_path, trainer.checkpoint(state, epoch + 1, 0))
            record = {"history": state.history, "best": state.best}
        except BaseException as error:
            context.broadcast_object({"error": f"{type(error).__name__}: {error}"})  # free the others
            raise
    # the other ranks wait here for rank 0's validation, best model and checkpoint
    record = context.broadcast_object(record)
    if "error" in record:
        raise RuntimeError(f"rank 0 failed at the end of epoch {epoch + 1}: {record['error']}")
    state.history, state.best = list(record["history"]), dict(record["best"])


@contextlib.contextmanager
def _main_first(context: distributed.DistContext):  # type: ignore[no-untyped-def]
    """Rank 0 runs the block first (downloads, caches), then the other ranks."""
    if context.enabled and not context.is_main:
        context.barrier()
    yield
    if context.enabled and context.is_main:
        context.barrier()


def _log_progress(bar, meter: LossMeter, rate: float, epoch: int, epochs: int, step: int, steps: int) -> None:  # type: ignore[no-untyped-def]
    loss = meter.peek()  # no wait for the GPU: the value of the previous log point on CUDA
    shown = "…" if loss is None else f"{loss:.4f}"
    if bar is not None:
        bar.set_postfix(loss=shown, img_s=f"{rate:.0f}")
    else:
        log.info("epoch %d/%d step %d/%d: loss %s, %.0f images/s", epoch + 1, epochs, step + 1, steps, shown, rate)


def _validate(trainer: Trainer, progress: bool) -> dict[str, Any]:
    config, data = trainer.config, trainer.data
    k = MetricName.parse(config.best_metric).k
    scores = compute_scores(
        trainer.input_model, trainer.val_set, data.all_vectors, batch_size=config.eval_batch_size,
        num_workers=config.num_workers, device=trainer.device, progress=progress, description="validation",
    )
    # the best epoch under the dataset's evaluation protocol (evaluate.<d>.protocol)
    k = k or min(3, len(data.unseen_index))  # an mAP metric: the top 3 beside it (fewer unseen tags: fewer)
    return evaluate(scores, data.val_targets, data.seen_index, data.unseen_index, [k],
                    protocol=data.val_protocol)  # type: ignore[arg-type]


def _progress_bar(enabled: bool, total: int, initial: int, description: str):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="step", leave=False)
