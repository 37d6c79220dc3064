"""The training config: what defines a training run (``train.<dataset>`` in params.yaml).

Plain dataclasses, no torch: reading params never loads the deep-learning stack. The training
loop (``sdl.training``) takes a :class:`TrainConfig`; its :meth:`TrainConfig.fingerprint`
decides whether a checkpoint resumes. ``model`` picks the model family (``sdl.models``):
``sdl`` (Ben-Cohen et al., ICCV 2021) or ``epsilon`` (Liu et al., AAAI 2024), whose
architecture choices are the nested :class:`EpsilonOptions` (``train.<dataset>.epsilon``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sdl.config.epsilon import EpsilonOptions
from sdl.config.metric_names import MetricName

MODEL_FAMILIES = ("sdl", "epsilon")
SCHEDULES = ("one_cycle", "step")
TOKEN_CACHES = ("float32", "float16")
DATA_PATHS = ("jpeg", "uint8_cache")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation switches."""

    hflip: bool = True
    cutout_p: float = 0.5
    cutout_factor: float = 0.5
    randaugment: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.cutout_p <= 1.0:
            raise ValueError(f"cutout_p must be in [0, 1], got {self.cutout_p}")
        if not 0.0 < self.cutout_factor <= 1.0:
            raise ValueError(f"cutout_factor must be in (0, 1], got {self.cutout_factor}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; hashed to decide whether a checkpoint resumes."""

    model: Literal["sdl", "epsilon"] = "sdl"  # the model family (sdl.models)
    backbone: str = "tresnet_m"
    pretrained: bool | str = True
    num_rows: int = 7
    image_size: int = 224
    epochs: int = 7
    batch_size: int = 192
    lr: float = 1e-4
    weight_decay: float = 3e-4
    optimizer: str = "adam"
    # "one_cycle": cosine one-cycle stepped per iteration, peak lr at pct_start (SDL, sec. 4.1);
    # "step": lr for the first lr_milestones[0] epochs, then x lr_gamma after each milestone
    # (Epsilon: 1e-5 for epochs 1-3, "decreases by 1/2 at the 4-th epoch": [3], 0.5)
    schedule: Literal["one_cycle", "step"] = "one_cycle"
    pct_start: float = 0.1
    lr_milestones: list[int] = field(default_factory=lambda: [3])
    lr_gamma: float = 0.5
    loss: str = "sdl"
    loss_kwargs: dict[str, Any] = field(default_factory=lambda: {"reg_lambda": 0.3})
    reduction: str = "max"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epsilon: EpsilonOptions = field(default_factory=EpsilonOptions)  # used when model is epsilon
    # Epsilon only: keep the frozen backbone's tokens of every train/val image in the train
    # stage's working state (--state) and train the head on them ("float16" halves the disk);
    # null: no cache, the backbone runs every step. A cache holds un-augmented tokens, so it
    # needs augmentation off (BENCHMARKS.md, "Epsilon: the token cache").
    token_cache: Literal["float32", "float16"] | None = None
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
    # A released ZS_SDL checkpoint (e.g. NUS_mtresnet_224.pth): the train stage converts it into
    # this project's model instead of training (sdl.models.released), so evaluate scores it.
    released_checkpoint: str | None = None
    # How, not what (left out of the fingerprint): processes (GPUs) per node under torchrun,
    # an integer or "auto" (one per visible GPU); batch_size stays the global batch.
    nproc_per_node: int | str = 1
    pin_memory: bool = True  # page-locked loader batches (CUDA only)
    persistent_workers: bool = True  # loader workers live across epochs (num_workers > 0)
    prefetch_factor: int = 2  # batches each worker prepares ahead (num_workers > 0; shared memory!)
    # How the training images are read. "jpeg": each image decoded, resized and augmented with
    # PIL every epoch (sdl.data.dataset). "uint8_cache": decoded once into a memory-mapped uint8
    # file at image_size (sdl.data.decoded_cache; in --state, or in decoded_cache_dir), augmented
    # on uint8 tensors with the same draws (sdl.data.tensor_augment), normalised on the device.
    # The same pixels and draws; RandAugment's pixels differ within its tolerances (BENCHMARKS.md).
    data_path: Literal["jpeg", "uint8_cache"] = "jpeg"
    decoded_cache_dir: str | None = None  # null: <state>/decoded-<image_size>px
    # Several machines (torchrun's c10d rendezvous; sdl.training.distributed): nnodes machines
    # of nproc_per_node processes each, meeting at rdzv_endpoint ("host:port" of the first
    # machine; null: $SDL_RDZV_ENDPOINT) under the job id rdzv_id (null: $SDL_RDZV_ID,
    # $SLURM_JOB_ID, or "sdl-train"). A machine's rank comes from $SDL_NODE_RANK or $SLURM_NODEID.
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None

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
        self._check_family_and_schedule()
        if self.num_workers < 0 or self.checkpoint_every_steps < 0 or self.max_steps_per_epoch < 0:
            raise ValueError("train.num_workers, checkpoint_every_steps, max_steps_per_epoch must be >= 0")
        if self.nproc_per_node != "auto" and (
            isinstance(self.nproc_per_node, bool) or not isinstance(self.nproc_per_node, int) or self.nproc_per_node < 1
        ):
            raise ValueError(f"train.nproc_per_node must be an integer >= 1 or 'auto', got {self.nproc_per_node!r}")
        if self.prefetch_factor < 1:
            raise ValueError(f"train.prefetch_factor must be >= 1, got {self.prefetch_factor}")
        if self.token_cache is not None and self.data_path != "jpeg":
            raise ValueError("train.token_cache holds un-augmented tokens of the images: it needs data_path: jpeg")
        if self.released_checkpoint and self.model != "sdl":
            raise ValueError(f"released_checkpoint is an SDL checkpoint: it needs model: sdl, got {self.model!r}")
        if self.data_path not in DATA_PATHS:
            raise ValueError(f"train.data_path must be one of {list(DATA_PATHS)}, got {self.data_path!r}")
        if isinstance(self.nnodes, bool) or not isinstance(self.nnodes, int) or self.nnodes < 1:
            raise ValueError(f"train.nnodes must be an integer >= 1, got {self.nnodes!r}")
        if self.rdzv_endpoint is not None and not _is_endpoint(self.rdzv_endpoint):
            raise ValueError(f"train.rdzv_endpoint must be 'host:port', got {self.rdzv_endpoint!r}")
        try:
            MetricName.parse(self.best_metric)
        except ValueError as error:
            raise ValueError(f"train.best_metric: {error}") from None

    def _check_family_and_schedule(self) -> None:
        if self.model not in MODEL_FAMILIES:
            raise ValueError(f"train.model must be one of {list(MODEL_FAMILIES)}, got {self.model!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        milestones = list(self.lr_milestones)
        if any(m < 1 for m in milestones) or milestones != sorted(set(milestones)):
            raise ValueError(f"train.lr_milestones must be increasing epochs >= 1, got {milestones}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"train.lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if self.token_cache is not None and self.token_cache not in TOKEN_CACHES:
            raise ValueError(f"train.token_cache must be null or one of {list(TOKEN_CACHES)}, got {self.token_cache!r}")
        if self.token_cache is not None:
            if self.model != "epsilon":
                raise ValueError("train.token_cache needs model: epsilon (only a frozen backbone's tokens can be cached)")
            augment = self.augment
            if augment.hflip or augment.cutout_p > 0 or augment.randaugment:
                raise ValueError(
                    "train.token_cache holds un-augmented tokens: set augment {hflip: false, cutout_p: 0, "
                    "randaugment: false}, or token_cache: null"
                )

    def fingerprint(self) -> str:
        """A hash of the settings that change what training computes (not where/how fast)."""
        ignored = {
            "num_workers", "device", "eval_batch_size", "checkpoint_every_steps", "nproc_per_node",
            "pin_memory", "persistent_workers", "prefetch_factor", "decoded_cache_dir", "nnodes", "rdzv_endpoint",
            "rdzv_id",
        }
        if self.model != "epsilon":
            ignored |= {"epsilon"}  # an SDL run does not read them
        if self.data_path == "jpeg":  # the default adds nothing: checkpoints of earlier runs keep resuming
            ignored.add("data_path")  # another data path starts over: RandAugment's pixels differ slightly
        settings = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignored}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _is_endpoint(value: str) -> bool:
    """``host:port`` (an IPv6 host in brackets), port 0-65535."""
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and int(port) < 65536
