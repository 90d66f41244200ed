"""Logging attention overlays during validation.

To TensorBoard as an image when the run's logger is a ``TensorBoardLogger``; otherwise as a PNG
under ``<log_dir>/overlays/epoch_<N>/<tag>.png``. Tasks call :func:`log_overlay` from
``on_validation_epoch_end`` for a fixed handful of validation examples, behind their
``log_overlays`` switch. Only global rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure

__all__ = ["log_overlay", "overlay_dir"]


def overlay_dir(trainer: Trainer) -> Path:
    """Where PNG overlays go when no image-capable logger is attached.

    The first logger's ``log_dir`` (``save_dir`` for loggers without one), else the trainer's
    ``default_root_dir``: what ``trainer.log_dir`` gives, without its broadcast — only global
    rank 0 writes overlays, and a collective called on one rank alone hangs a multi-process run.
    """
    logger = trainer.loggers[0] if trainer.loggers else None
    root = (getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)) if logger else None
    return Path(root or trainer.default_root_dir) / "overlays" / f"epoch_{trainer.current_epoch:03d}"


def log_overlay(trainer: Trainer, tag: str, fig: Figure) -> Path | None:
    """Log ``fig`` under ``tag``; returns the PNG path when one was written.

    The figure is closed afterwards either way.
    """
    from multiattn.viz import figure_to_array, save_figure

    try:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return None
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                image = figure_to_array(fig)  # (H, W, 3) uint8
                logger.experiment.add_image(tag, image, global_step=trainer.global_step, dataformats="HWC")
                return None
        path = overlay_dir(trainer) / f"{tag.replace('/', '_')}.png"
        save_figure(fig, path)
        return path
    finally:
        fig.clear()
