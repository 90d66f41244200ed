"""Components chosen by name: one ``name -> builder`` table per kind of component.

Every choice a configuration makes by name (an encoder, a decoder, an attention kind) is a key of
a dictionary whose values build the component; :func:`pick` looks one up and, for an unknown
name, raises an error listing the valid ones. Adding a choice is adding one entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["pick"]

T = TypeVar("T")


def pick(table: Mapping[str, T], name: str, *, what: str) -> T:
    """``table[name]``; an unknown ``name`` raises ``ValueError`` naming ``what`` and the valid names."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(repr(key) for key in table)
        raise ValueError(f"{what}: unknown name {name!r}; valid names: {valid}") from None
