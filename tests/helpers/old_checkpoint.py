"""The former flat hyper-parameter layout of a system, written back from its nested one (the
old-checkpoint tests of every task build their "old" checkpoints with it)."""

from __future__ import annotations

from typing import Any


def _flatten(nested: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flat_hyperparameters(
    hparams: Any, flat_layout: dict[str, str], groups: tuple[str, ...], class_path: str
) -> dict[str, Any]:
    """``hparams`` as the former layout stored them: every key of the nested ``groups`` under its
    flat name (``flat_layout`` maps flat name -> nested place), the rest as it is. Keys added
    after the move have no flat name: the former layout did not store them (they load as their
    defaults)."""
    places = {place: flat for flat, place in flat_layout.items()}
    stored = dict(hparams)
    nested = _flatten({g: stored.pop(g) for g in groups})
    flat = {places[key]: value for key, value in nested.items() if key in places}
    return {"_class_path": class_path, **stored, **flat}
