"""multiattn.tasks.common.overlay_logging: where PNG overlays go, without collectives on rank 0 alone."""

from __future__ import annotations

import types
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger

from multiattn.tasks.common.overlay_logging import overlay_dir


class _Trainer(types.SimpleNamespace):
    @property
    def log_dir(self):  # Lightning's broadcasts: on rank 0 alone it would hang a DDP run
        raise AssertionError("overlay_dir must not call Trainer.log_dir")


def test_overlay_dir_follows_the_logger_without_trainer_log_dir(tmp_path: Path) -> None:
    logger = CSVLogger(save_dir=str(tmp_path), name="logs")
    trainer = _Trainer(loggers=[logger], default_root_dir=str(tmp_path / "root"), current_epoch=3)
    assert overlay_dir(trainer) == Path(logger.log_dir) / "overlays" / "epoch_003"
    bare = _Trainer(loggers=[], default_root_dir=str(tmp_path / "root"), current_epoch=0)
    assert overlay_dir(bare) == tmp_path / "root" / "overlays" / "epoch_000"
