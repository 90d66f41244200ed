"""A sampler whose order depends only on ``(seed, epoch)`` and which can resume mid-epoch.

Lightning restores its loop counters from a checkpoint, but a plain ``DataLoader`` restarts the
epoch from its first batch, so a run resumed mid-epoch sees different batches than an
uninterrupted one. :class:`ResumableSampler` fixes the order per epoch (Lightning calls
``set_epoch``) and can skip the samples already consumed; ``multiattn.tasks.common.callbacks.ExactResume``
tells it how many. :class:`MixtureSampler` does the same over several datasets stacked end to end,
with a share of each epoch drawn from each of them that can change from epoch to epoch (a
curriculum).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "MixtureSampler"]


def _permutation(size: int, seed: int) -> list[int]:
    """``torch.randperm(size)`` from a generator seeded with ``seed``."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()


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
        return _permutation(self.num_samples, self.seed * 1_000_003 + epoch)

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return iter(self.order(self.epoch)[skip:])

    def __len__(self) -> int:
        return self.num_samples


class MixtureSampler(ResumableSampler):
    """A resumable epoch of ``num_samples`` indices drawn from datasets stacked end to end.

    The datasets are concatenated in the order of ``part_sizes`` (part ``k``'s indices start at
    ``sum(part_sizes[:k])``). Epoch ``e`` takes ``round(shares(e)[k] * num_samples)`` indices of
    part ``k`` (the last part takes the remainder): the next ones of a per-part permutation that
    runs on across epochs, so each part is seen evenly whatever its share, then shuffles them
    together. Like :class:`ResumableSampler`, the order depends only on ``(seed, epoch)``.

    Torch's ``WeightedRandomSampler`` draws with replacement and its weights cannot change with the
    epoch, so a curriculum that switches from one digit variety to a mixture needs its own sampler.

    Args:
        part_sizes: length of each stacked dataset.
        shares: epoch -> one share per part (non-negative, summing to 1).
        num_samples: indices per epoch.
        seed: base seed of the permutations.
    """

    def __init__(
        self,
        part_sizes: Sequence[int],
        shares: Callable[[int], Sequence[float]],
        *,
        num_samples: int,
        seed: int = 0,
    ) -> None:
        super().__init__(num_samples, shuffle=True, seed=seed)
        if not part_sizes or any(size <= 0 for size in part_sizes):
            raise ValueError(f"part_sizes must be positive, received {list(part_sizes)}")
        self.part_sizes = [int(size) for size in part_sizes]
        self.shares = shares

    def counts(self, epoch: int) -> list[int]:
        """Indices drawn from each part in ``epoch``."""
        shares = [float(share) for share in self.shares(epoch)]
        if len(shares) != len(self.part_sizes) or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(
                f"epoch {epoch}: shares {shares} must be {len(self.part_sizes)} values summing to 1"
            )
        counts = [round(share * self.num_samples) for share in shares[:-1]]
        return [*counts, self.num_samples - sum(counts)]

    def _part_indices(self, part: int, start: int, count: int) -> list[int]:
        """Positions ``start .. start + count`` of part ``part``'s endless stream of permutations."""
        size, taken = self.part_sizes[part], []
        while len(taken) < count:
            cycle, offset = divmod(start + len(taken), size)
            permutation = _permutation(size, (self.seed * 1_000_003 + cycle) * 31 + part)
            taken += permutation[offset : offset + count - len(taken)]
        return taken

    def order(self, epoch: int) -> list[int]:
        drawn = [0] * len(self.part_sizes)  # indices of each part drawn before this epoch
        for past in range(epoch):
            drawn = [a + b for a, b in zip(drawn, self.counts(past))]
        indices: list[int] = []
        offset = 0
        for part, (size, count) in enumerate(zip(self.part_sizes, self.counts(epoch))):
            indices += [offset + i for i in self._part_indices(part, drawn[part], count)]
            offset += size
        return [indices[i] for i in _permutation(len(indices), self.seed * 1_000_003 + epoch)]
