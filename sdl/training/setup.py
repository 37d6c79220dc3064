"""What a training run is built from, for either model family: the seeded start, the model
(``train.<d>.model``, with a frozen backbone for Epsilon), the optimiser's parameter groups
(trainable parameters only), the loss's arguments, and the datasets: images, or for Epsilon
with ``token_cache`` the backbone's cached tokens (``sdl.training.token_cache``)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sdl.config.training import TrainConfig
from sdl.data.dataset import TaggedImageDataset
from sdl.models import create_model
from sdl.safety.errors import InputError
from sdl.training import distributed
from sdl.training.data_path import training_images
from sdl.training.state import TrainData
from sdl.training.token_cache import CACHE_DIR, TokenDataset, cached_tokens

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so CPU runs repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_data(config: TrainConfig, data: TrainData, world: int) -> None:
    if len(data.train_paths) < 2:
        raise InputError(f"need at least 2 training images, got {len(data.train_paths)}: check the split")
    if config.batch_size % world:
        raise InputError(f"train.batch_size {config.batch_size} is not divisible by the {world} processes")
    if world > 1 and len(data.train_paths) < config.batch_size:
        raise InputError(
            f"{world} processes need at least batch_size = {config.batch_size} training images, "
            f"got {len(data.train_paths)}"
        )


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters (a frozen backbone's get no optimizer state), weight decay on
    weights only: not on biases and 1-d (norm) parameters (SDL's released code; Epsilon's text
    says only "the weight decay of the Adam optimizer is set to 4e-3", and the same rule is kept)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_bias = name.rsplit(".", 1)[-1].endswith("bias")  # also Epsilon's stacked block_bias, mlp1_bias
        (no_decay if parameter.ndim <= 1 or is_bias else decay).append(parameter)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def loss_kwargs(config: TrainConfig, data: TrainData, device: torch.device) -> dict[str, Any]:
    """The loss's keyword arguments: ``config.loss_kwargs``, the reduction, and on CUDA the
    largest label count of the training set as ``max_positives`` (the sync-free loss)."""
    kwargs = dict(config.loss_kwargs)
    if config.loss == "sdl":
        kwargs.setdefault("reduction", config.reduction)
    if config.loss in ("sdl", "fast0tag") and device.type == "cuda" and len(data.train_targets):
        kwargs.setdefault("max_positives", int((np.asarray(data.train_targets) == 1).sum(axis=1).max()))
    return kwargs


def new_model(config: TrainConfig, wordvec_dim: int) -> nn.Module:
    """The model ``config`` describes, of family ``config.model``."""
    return create_model(
        config.backbone, config.num_rows, wordvec_dim, config.pretrained, family=config.model,
        image_size=config.image_size, reduction=config.reduction,
        options=config.epsilon if config.model == "epsilon" else None,
    )


def place_model(model: nn.Module, config: TrainConfig, device: torch.device, context: distributed.DistContext) -> nn.Module:
    """The model on ``device``, BatchNorm synchronised across GPUs when it trains, channels_last."""
    if context.enabled and distributed.has_batchnorm(model, trainable_only=True):
        if device.type == "cuda":
            # statistics of the global batch: N ranks train the function one process would
            model = distributed.convert_sync_batchnorm(model)
        else:
            log.warning("BatchNorm statistics are per rank on the CPU (SyncBatchNorm needs a GPU)")
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def datasets(
    config: TrainConfig, data: TrainData, model: nn.Module, out_dir: Path, device: torch.device, progress: bool
) -> tuple[Dataset, Dataset]:
    """The training and validation sets: images (augmented for training), or with a token
    cache the backbone's tokens of the un-augmented images, cached in ``out_dir``."""
    mean, std = model.config.mean, model.config.std
    if config.token_cache is None:
        train_set = training_images(config, data, mean, std, out_dir, progress)  # the data path of the params
        return train_set, TaggedImageDataset(data.val_paths, data.val_targets, config.image_size, mean, std)
    options = {"batch_size": config.eval_batch_size, "num_workers": config.num_workers, "device": device,
               "progress": progress}
    folder = out_dir / CACHE_DIR
    train_file = cached_tokens(model, data.train_paths, folder, "train", config.token_cache, **options)
    val_file = cached_tokens(model, data.val_paths, folder, "val", config.token_cache, **options)
    return TokenDataset(train_file, data.train_targets), TokenDataset(val_file, data.val_targets)
