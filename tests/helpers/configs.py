"""Override nested config values in a YAML ``init_args`` mapping: ``override(args, optim__learning_rate=1)``."""

from __future__ import annotations

import copy
from typing import Any


def override(args: dict[str, Any], **dotted: Any) -> dict[str, Any]:
    """A deep copy of ``args`` with each ``group__key=value`` set at ``args[group][key]``."""
    result = copy.deepcopy(args)
    for name, value in dotted.items():
        *parents, leaf = name.split("__")
        target = result
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return result
