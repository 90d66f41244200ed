"""Typed component configurations: dataclasses in, plain dictionaries in checkpoints.

Each task describes its model as small dataclasses (one per component, choices as ``Literal``,
every field documented in the class's ``Attributes:``), so LightningCLI (jsonargparse) nests them
in YAML and lists every key and choice in ``--help``. Checkpoints must stay loadable with
``torch.load(weights_only=True)``, so they store the same configurations as plain dictionaries
(:func:`to_plain`), and :func:`from_plain` turns such a dictionary back into the dataclass,
checking it with jsonargparse exactly as the command line would.

:func:`nest` is the one shim for checkpoints written when a task's hyper-parameters were one flat
list of arguments: it moves each former flat name to its place in the nested layout.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["from_plain", "to_plain", "nest"]

C = TypeVar("C")


def to_plain(config: Any) -> dict[str, Any]:
    """A dataclass config as nested plain ``dict`` / ``tuple`` / scalars (what a checkpoint stores)."""
    return dataclasses.asdict(config)


def from_plain(cls: type[C], value: C | Mapping[str, Any] | None, *, name: str) -> C:
    """``value`` as a ``cls`` instance: itself, the defaults (``None``), or parsed from a mapping.

    Mappings are checked as the command line checks a YAML section (types, ``Literal`` choices,
    unknown keys), so a checkpoint's stored dictionary rebuilds the same config.

    Raises:
        ValueError: one line naming ``name``, the key and the problem.
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a {cls.__name__} or a mapping, received {type(value).__name__}")
    from jsonargparse import ArgumentParser  # lazy: only checkpoints and tests build configs from dicts

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", type=cls)
    try:
        parsed = parser.parse_object({"config": dict(value)})
    except Exception as err:  # jsonargparse raises ArgumentError / TypeError with multi-line text
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        raise ValueError(f"{name}: {' '.join(lines)[:300]}") from None
    return parser.instantiate(parsed).config


def nest(flat: Mapping[str, Any], moves: Mapping[str, str]) -> dict[str, Any]:
    """Move flat keys to dotted places: ``nest({"lr": 1}, {"lr": "optim.learning_rate"})``.

    Keys absent from ``moves`` (and mappings) stay where they are (copied); then each moved key is written at its
    place, creating or entering the dictionaries on its way, so a moved key wins over the same
    place inside a nested value (a flat override of one stored key). Used to read checkpoints of a
    former flat layout and flat overrides of the stored hyper-parameters.
    """
    # A mapping is a group of the nested layout already (a former flat name may also be a group's
    # name now: ``tokenizer`` -> ``tokenizer.name``), so only scalars and lists move.
    moved = {key for key, value in flat.items() if key in moves and not isinstance(value, Mapping)}
    nested: dict[str, Any] = {key: copy.deepcopy(value) for key, value in flat.items() if key not in moved}
    for key, value in flat.items():
        if key not in moved:
            continue
        *parents, leaf = moves[key].split(".")
        target = nested
        for parent in parents:
            if not isinstance(target.get(parent), dict):
                target[parent] = dict(target[parent]) if isinstance(target.get(parent), Mapping) else {}
            target = target[parent]
        target[leaf] = value
    return nested
