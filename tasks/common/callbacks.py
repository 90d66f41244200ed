"""Callbacks shared by the tasks."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from multiattn.resumable import ResumableSampler

__all__ = ["ExactResume"]


def _train_samplers(trainer: Trainer) -> list[ResumableSampler]:
    loaders = trainer.train_dataloader
    if loaders is None:
        return []
    if not isinstance(loaders, (list, tuple)):
        loaders = [loaders.values()] if isinstance(loaders, dict) else [loaders]
    found = []
    for loader in loaders:
        for sampler in (
            getattr(loader, "sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        ):
            if isinstance(sampler, ResumableSampler) and sampler not in found:
                found.append(sampler)
    return found


class ExactResume(Callback):
    """Make a run resumed from a mid-epoch checkpoint train exactly like an uninterrupted one.

    - Re-seeds torch / numpy / random at every training step from ``(seed, global_step)``, so
      dropout and augmentation drawn in the main process do not depend on where the run resumed.
    - Tells the training :class:`~multiattn.resumable.ResumableSampler` to skip the batches the
      checkpointed run had already trained on in the interrupted epoch.

    Exactness holds for ``num_workers=0`` or for datasets whose randomness depends only on the index
    (worker seeds are drawn when the iterator starts).

    Args:
        seed: mixed with the global step for the per-step seed.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning skips ``on_train_epoch_start`` when it resumes mid-epoch; ``on_train_start``
        # runs after the loops were restored and before the epoch's iterator is created.
        fit_loop = trainer.fit_loop
        skip_batches = (
            fit_loop.epoch_loop.batch_progress.current.processed if fit_loop.restarted_mid_epoch else 0
        )
        if not skip_batches:
            return
        loader = trainer.train_dataloader
        batch_size = getattr(loader, "batch_size", None) or getattr(
            getattr(loader, "batch_sampler", None), "batch_size", 1
        )
        for sampler in _train_samplers(trainer):
            sampler.skip_next(skip_batches * batch_size)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int
    ) -> None:
        step_seed = (self.seed * 1_000_003 + trainer.global_step) % (2**31 - 1)
        random.seed(step_seed)
        np.random.seed(step_seed)  # noqa: NPY002 - reseeds the legacy global RNG that user code may use
        torch.manual_seed(step_seed)
