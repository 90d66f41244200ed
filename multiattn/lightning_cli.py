"""The LightningCLI behind ``multiattn fit|validate|test|predict`` (the only core file that
imports Lightning at module level; :mod:`multiattn.cli` imports it lazily).

Differences from a bare ``LightningCLI``:
- subclass mode for both model and data, so any LightningModule / LightningDataModule named by
  ``class_path`` in a config works;
- ``config.yaml`` is overwritten on re-runs (Lightning refuses by default; docs/conventions.md);
- checkpoints are read only through :func:`multiattn.checkpoint.load_checkpoint`
  (``weights_only=True``): ``--ckpt_path`` never unpickles arbitrary objects;
- user errors print one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO

from multiattn.checkpoint import load_checkpoint, upgrade_hparams
from multiattn.config_files import resolve_config_args
from multiattn.extras import missing_extra
from multiattn.io import UserError

__all__ = ["SafeCheckpointIO", "MultiattnCLI", "build_cli"]


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, but reads go through the restricted unpickler."""

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if isinstance(path, (str, Path)) and "://" not in str(path):
            return load_checkpoint(
                path,
                map_location=map_location if map_location is not None else "cpu",
                require_state_dict=False,
            )
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def _import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class MultiattnCLI(LightningCLI):
    """LightningCLI in subclass mode with safe checkpoint loading."""

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path itself (for its hyper-parameters) before the trainer
        # exists; check the file here first so a bad one gets a one-line error, not a traceback.
        # Lightning's own reading (torch.load) is replaced by load_checkpoint, so a checkpoint's stored
        # model class path is the one it maps to (multiattn.checkpoint.MOVED_CLASS_PATHS).
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in ("last", "best", "hpc") or "://" in str(ckpt_path):
            return super()._parse_ckpt_path()
        # As LightningCLI does (the checkpoint's hyper-parameters override the config's model
        # arguments), but read safely, and moved to the model's current layout first when its
        # class has an upgrade hook (multiattn.checkpoint.upgrade_hparams).
        hparams = dict(load_checkpoint(ckpt_path).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return None
        class_path = hparams.pop("_class_path", None)
        model_class = _import_class(class_path or self.config[subcommand].model.class_path)
        hparams = upgrade_hparams(model_class, hparams)
        model = {"class_path": class_path, "dict_kwargs": hparams} if class_path else hparams
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise
        return None

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ModuleNotFoundError, ValueError) as err:
            # Lightning's TensorBoardLogger says only "Neither `tensorboard` nor `tensorboardX` is
            # available" (and jsonargparse wraps that in a ValueError about the class path).
            cause: BaseException | None = err
            while cause is not None:
                if isinstance(cause, ModuleNotFoundError) and "tensorboard" in str(cause).lower():
                    raise missing_extra("tensorboard", "the TensorBoard logger") from None
                cause = cause.__cause__ or cause.__context__
            raise

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Trainer:
        plugins = config.get("plugins")
        plugins = (
            [] if plugins is None else (list(plugins) if isinstance(plugins, (list, tuple)) else [plugins])
        )
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(SafeCheckpointIO())
        config["plugins"] = plugins
        return super()._instantiate_trainer(config, callbacks)


def build_cli(args: list[str] | None = None, *, run: bool = True) -> MultiattnCLI | None:
    """Build (and by default run) the CLI. ``run=False`` only parses and instantiates (tests).

    With ``run=False``, ``args`` must not contain a subcommand.
    """
    if args is not None and list(args) == sys.argv[1:]:
        args = None  # the console script: let LightningCLI read sys.argv itself (no double-args warning)
    if args is None:
        # `-c stn`: a packaged config's name (also in sys.argv, which DDP's spawned processes re-read)
        sys.argv[1:] = resolve_config_args(sys.argv[1:])
    else:
        args = resolve_config_args(args)
    try:
        return MultiattnCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=True,
        )
    except UserError as err:
        print(f"multiattn: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
