"""The part of a LightningDataModule every task shares: one loader builder for every split."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

__all__ = ["SplitDataModule"]


class SplitDataModule(LightningDataModule):
    """Routes Lightning's four dataloader hooks to ``_loader(split, shuffle)``.

    ``train`` is shuffled; ``val`` and ``test`` are not; ``predict`` runs over the test split.
    Subclasses implement ``_loader``.
    """

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
