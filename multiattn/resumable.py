"""A sampler whose order depends only on ``(seed, epoch)`` and which can resume mid-epoch.

Lightning restores its loop counters from a checkpoint, but a plain ``DataLoader`` restarts the
epoch from its first batch, so a run resumed mid-epoch sees different batches than an
uninterrupted one. :class:`ResumableSampler` fixes the order per epoch (Lightning calls
``set_epoch``) and can skip the samples already consumed; ``multiattn.tasks.common.callbacks.ExactResume``
tells it how many.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler"]


class ResumableSampler(Sampler[int]):
    """Shuffled (or sequential) indices, reproducible from ``(seed, epoch)``, resumable.

    Args:
        num_samples: dataset length.
        shuffle: permute the indices each epoch.
        seed: base seed of the permutation.
    """

    def __init__(self, num_samples: int, *, shuffle: bool = True, seed: int = 0) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, received {num_samples}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def skip_next(self, num_samples: int) -> None:
        """Drop the first ``num_samples`` indices of the next iteration only (a resumed epoch)."""
        self._skip = max(0, int(num_samples))

    def order(self, epoch: int) -> list[int]:
        """The full index order of ``epoch``."""
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return iter(self.order(self.epoch)[skip:])

    def __len__(self) -> int:
        return self.num_samples
