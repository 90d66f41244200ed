"""A trivial LightningModule / LightningDataModule for CLI, resume and DDP tests."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from multiattn.resumable import ResumableSampler


@dataclass
class ToyBatch:
    x: Tensor
    y: Tensor


class ToyDataset(Dataset):
    def __init__(self, num_samples: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(num_samples, 8, generator=g)
        w = torch.randn(8, 1, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(num_samples, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]


def collate(items: list[tuple[Tensor, Tensor]]) -> ToyBatch:
    xs, ys = zip(*items)
    return ToyBatch(torch.stack(xs), torch.stack(ys))


class ToyDataModule(LightningDataModule):
    def __init__(self, num_samples: int = 64, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        self.train_set = ToyDataset(self.num_samples, self.seed)
        self.val_set = ToyDataset(16, self.seed + 1)

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(len(self.train_set), shuffle=True, seed=self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, collate_fn=collate)


class ToyModule(LightningModule):
    """Linear regression with dropout (so per-step seeding matters).

    Args:
        hidden: hidden width.
        lr: SGD learning rate.
        kill_at_step: if set, the process SIGKILLs itself when this global step starts (tests).
    """

    def __init__(self, hidden: int = 16, lr: float = 0.05, kill_at_step: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 1))

    def training_step(self, batch: ToyBatch, batch_idx: int) -> Tensor:
        if self.hparams.kill_at_step is not None and self.global_step == self.hparams.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        loss = nn.functional.mse_loss(self.net(batch.x), batch.y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: ToyBatch, batch_idx: int) -> None:
        self.log("val/loss", nn.functional.mse_loss(self.net(batch.x), batch.y), prog_bar=True)
        self.log("val/constant", 1.0)  # a metric that never improves after the first epoch (tests)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
