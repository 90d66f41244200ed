"""Loading checkpoints safely.

A checkpoint is a file anybody can hand you. ``torch.load`` with ``weights_only=False`` runs
whatever code a crafted pickle asks for, so multiattn never does that: checkpoints hold only
tensors and plain Python types (vocabularies travel as lists of strings), and every load goes
through :func:`load_checkpoint`, which uses the restricted unpickler and turns every failure
into a one-line :class:`~multiattn.io.UserError` naming the file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, TypeVar

import torch

from multiattn.io import UserError

__all__ = ["MOVED_CLASS_PATHS", "load_checkpoint", "load_system", "system_hparams", "upgrade_hparams"]

T = TypeVar("T")

# Module prefixes that moved (old -> new): the ``_class_path`` a checkpoint stores for its model and
# datamodule is rewritten on load, so checkpoints written before a move keep working.
MOVED_CLASS_PATHS: dict[str, str] = {"tasks.": "multiattn.tasks."}


def _upgrade_class_paths(checkpoint: Any) -> None:
    if not isinstance(checkpoint, dict):
        return
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        stored = checkpoint.get(key)
        class_path = stored.get("_class_path") if isinstance(stored, dict) else None
        if not isinstance(class_path, str):
            continue
        for old, new in MOVED_CLASS_PATHS.items():
            if class_path.startswith(old):
                stored["_class_path"] = new + class_path[len(old) :]
                break


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", *, require_state_dict: bool = True
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: the file.
        map_location: as for ``torch.load``.
        require_state_dict: insist on a model checkpoint (a dict with ``state_dict``); Lightning's
            own temporary files (e.g. ``ddp_spawn`` results) have none.

    Raises:
        UserError: the file is missing, is not a checkpoint, is truncated, or contains objects
            other than tensors and plain Python types (a pickle that would run code).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a checkpoint file (.ckpt)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: checkpoint file is empty")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # The restricted unpickler refuses globals it does not know: that is a crafted or foreign file.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{path}: refusing to load: the checkpoint contains objects other than tensors and plain "
            f"Python types ({first[:160]})"
        ) from None
    except Exception as err:  # torch.load raises many types on junk (struct.error, KeyError, ...)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt): {msg[:160]}") from None
    if require_state_dict and (not isinstance(checkpoint, dict) or "state_dict" not in checkpoint):
        raise UserError(f"{path}: not a multiattn/Lightning checkpoint (no 'state_dict' entry)")
    _upgrade_class_paths(checkpoint)
    return checkpoint


def system_hparams(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments stored by ``save_hyperparameters`` (private keys dropped)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def upgrade_hparams(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` in the layout ``cls`` takes now: its ``upgrade_hyperparameters`` hook, if it has one.

    A system whose hyper-parameters changed layout (flat arguments grouped into typed configs)
    keeps reading its older checkpoints, and overrides given by their former flat names, through
    that one hook.
    """
    upgrade = getattr(cls, "upgrade_hyperparameters", None)
    return upgrade(hparams) if callable(upgrade) else hparams


def load_system(
    cls: type[T],
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    **overrides: Any,
) -> T:
    """Rebuild a LightningModule from a checkpoint: no config file, no code beyond ``cls``.

    Args:
        cls: the LightningModule class (its ``__init__`` arguments are the stored hyper-parameters).
        path: the checkpoint.
        map_location: where tensors are loaded.
        **overrides: constructor arguments that replace stored ones (e.g. decoding settings); a
            system's upgrade hook also places overrides given by a former flat name.

    Returns:
        The module in eval mode, on ``map_location``.
    """
    checkpoint = load_checkpoint(path, map_location=map_location)
    hparams = upgrade_hparams(cls, {**system_hparams(checkpoint), **overrides})
    try:
        system = cls(**hparams)  # type: ignore[call-arg]
    except TypeError as err:
        raise UserError(f"{path}: checkpoint does not belong to {cls.__name__}: {err}") from None
    on_load = getattr(system, "on_load_checkpoint", None)
    if callable(on_load):
        on_load(checkpoint)
    try:
        system.load_state_dict(checkpoint["state_dict"])  # type: ignore[attr-defined]
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: weights do not match {cls.__name__}: {first[:200]}") from None
    system.to(map_location)  # type: ignore[attr-defined]
    system.eval()  # type: ignore[attr-defined]
    return system
