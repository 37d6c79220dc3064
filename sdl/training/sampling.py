"""The order of training samples: a seeded permutation per epoch, sharded by rank, that can
start part-way through an epoch (to resume), and the wrappers that carry the epoch to loader
workers that outlive it."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler

from sdl.data.dataset import TaggedImageDataset


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


class EpochIndices(Sampler[tuple[int, int]]):
    """``EpochOrder``'s indices paired with its epoch, for workers that outlive an epoch."""

    def __init__(self, order: EpochOrder) -> None:
        self.order = order

    def __iter__(self):  # type: ignore[no-untyped-def]
        epoch = self.order.epoch
        return ((epoch, index) for index in self.order)

    def __len__(self) -> int:
        return len(self.order)


class EpochDataset(Dataset):
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
