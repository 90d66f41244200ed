"""Components chosen by name: one ``name -> builder`` table per kind of component.

Every choice a configuration makes by name (an encoder, a decoder, an attention kind) is a key of
a dictionary whose values build the component; :func:`pick` looks one up and, for an unknown
name, raises an error listing the valid ones. Adding a choice is adding one entry.

A task's config dataclass of a component holds the options of all its variants (a decoder config
has the LSTM's ``hidden_dim`` and the Transformer's ``num_heads``); a builder passes on the ones
its variant takes, by their names (:func:`fields`): the config field and the constructor's
argument are one name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["pick", "fields"]

T = TypeVar("T")


def pick(table: Mapping[str, T], name: str, *, what: str) -> T:
    """``table[name]``; an unknown ``name`` raises ``ValueError`` naming ``what`` and the valid names."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(repr(key) for key in table)
        raise ValueError(f"{what}: unknown name {name!r}; valid names: {valid}") from None


def fields(config: Any, *names: str) -> dict[str, Any]:
    """``{name: config.<name>}`` for each of ``names``: the options of ``config`` a component takes."""
    return {name: getattr(config, name) for name in names}
