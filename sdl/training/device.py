"""The training step's device side: batches copied ahead on a side stream, the running loss
kept on the device, and autocast (bf16, or fp16 with a gradient scaler)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from sdl.data.tensor_augment import Normalizer
from sdl.training import distributed

MeanStd = tuple[Sequence[float], Sequence[float]]


def device_batches(batches, device: torch.device, channels_last: bool, normalize: MeanStd | None = None):  # type: ignore[no-untyped-def]
    """Batches on ``device``. On CUDA the next batch is copied on a side stream while the
    current one computes (the loader pins it), so the step does not wait for the copy. Image
    batches (B, C, H, W) become channels_last if asked; other inputs (cached tokens) stay as they are.

    uint8 image batches (``data_path: uint8_cache``) travel as bytes, a quarter of float32's,
    and are normalised on the device with ``normalize`` = (mean, std), as the PIL path
    normalises on the CPU (``sdl.data.tensor_augment.Normalizer``: the same numbers)."""
    normalizers: dict[torch.device, Normalizer] = {}

    def finish(images: torch.Tensor) -> torch.Tensor:  # on the copy's stream
        fmt = torch.channels_last if channels_last and images.dim() == 4 else torch.contiguous_format
        images = images.contiguous(memory_format=fmt)
        if images.dtype == torch.uint8:
            if normalize is None:
                raise ValueError("uint8 image batches need normalize=(mean, std)")
            if images.device not in normalizers:
                normalizers[images.device] = Normalizer(*normalize, device=images.device)
            images = normalizers[images.device](images)
        return images

    if device.type != "cuda":
        for images, targets in batches:
            yield finish(images.to(device)), targets.to(device)
        return
    stream = torch.cuda.Stream(device)

    def stage(batch):  # type: ignore[no-untyped-def]
        if batch is None:
            return None
        images, targets = batch
        with torch.cuda.stream(stream):
            images = finish(images.to(device, non_blocking=True))
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


class LossMeter:
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


def autocast_and_scaler(device: torch.device, enabled: bool) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext(), torch.amp.GradScaler("cuda", enabled=False)
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), torch.amp.GradScaler("cuda", enabled=False)
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda", enabled=True)
