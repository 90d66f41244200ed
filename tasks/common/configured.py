"""Typed configs in, plain dictionaries in the checkpoint: what the tasks' LightningModules share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from multiattn.configs import nest, to_plain

__all__ = ["ConfiguredSystem"]


class ConfiguredSystem:
    """Mixin of the tasks' LightningModules (listed before ``LightningModule`` among the bases).

    A system's ``__init__`` takes a handful of typed configs (``model``, ``optim``, ...): the
    dataclasses, or the plain dictionaries a checkpoint stores, read back with
    :func:`multiattn.configs.from_plain`. After ``save_hyperparameters()``, :meth:`store_configs`
    writes them into the hyper-parameters as plain dictionaries (``hparams.model`` etc.), so the
    checkpoint rebuilds the system and ``torch.load(weights_only=True)`` reads it. Checkpoints of
    the former flat layout are read through :meth:`upgrade_hyperparameters`.

    Attributes:
        FLAT_LAYOUT: each former flat hyper-parameter name -> its dotted place now.
    """

    FLAT_LAYOUT: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def upgrade_hyperparameters(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Hyper-parameters of a checkpoint in the former flat layout, nested as the constructor takes them."""
        return nest(hparams, cls.FLAT_LAYOUT)

    def store_configs(self, **configs: Any) -> None:
        """Write the typed ``configs`` into the saved hyper-parameters as plain dictionaries."""
        self.hparams.update({name: to_plain(config) for name, config in configs.items()})  # type: ignore[attr-defined]
