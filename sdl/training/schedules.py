"""Learning-rate schedules, stepped once per training iteration (``train.<d>.schedule``).

* ``one_cycle``: SDL's (paper section 4.1, "one cycle policy"): cosine warm-up to ``lr`` over
  ``pct_start`` of the run, then cosine annealing (``torch.optim.lr_scheduler.OneCycleLR``).
* ``step``: Epsilon's ("Implementation Details"): "the initial learning rate is set to 1e-5,
  and then decreases by 1/2 at the 4-th epoch": ``lr`` until epoch ``lr_milestones[0]`` is
  done, then x ``lr_gamma`` after each milestone (``[3]``, ``0.5``: epochs 1-3 at 1e-5, 4-7 at
  5e-6). Stepped per iteration like one-cycle, so a run resumed mid-epoch needs nothing else.
"""

from __future__ import annotations

import bisect

import torch

from sdl.config.training import TrainConfig


class StepFactor:
    """The ``step`` schedule's lr factor at an iteration: gamma ** (milestones passed)."""

    def __init__(self, milestones: list[int], gamma: float, steps_per_epoch: int) -> None:
        self.boundaries = [m * steps_per_epoch for m in milestones]
        self.gamma = gamma

    def __call__(self, iteration: int) -> float:
        return self.gamma ** bisect.bisect_right(self.boundaries, iteration)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule ``config.schedule`` names, over ``config.epochs`` x ``steps_per_epoch``."""
    if config.schedule == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
            pct_start=config.pct_start, anneal_strategy="cos",
        )
    if config.schedule == "step":
        factor = StepFactor(list(config.lr_milestones), config.lr_gamma, steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown train.schedule {config.schedule!r}")
