"""Typed configs: plain dictionaries round-trip, bad keys fail naming them, the flat-layout shim."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from multiattn.builders import pick
from multiattn.configs import from_plain, nest, to_plain


@dataclass(frozen=True)
class _Inner:
    """Attributes:
    size: a size.
    kind: a kind.
    """

    size: tuple[int, ...] = (3,)
    kind: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class _Outer:
    """Attributes:
    inner: the inner part.
    rate: a rate.
    """

    inner: _Inner = field(default_factory=_Inner)
    rate: float = 0.1


def test_plain_round_trip():
    config = _Outer(inner=_Inner(size=(4, 5), kind="b"), rate=2.0)
    plain = to_plain(config)
    assert plain == {"inner": {"size": (4, 5), "kind": "b"}, "rate": 2.0}
    assert from_plain(_Outer, plain, name="x") == config
    assert from_plain(_Outer, {"inner": {"size": [4, 5]}}, name="x").inner.size == (4, 5)  # YAML lists
    assert from_plain(_Outer, None, name="x") == _Outer() and from_plain(_Outer, config, name="x") is config


@pytest.mark.parametrize(
    "value, message",
    [({"inner": {"kind": "z"}}, "kind"), ({"inner": {"sise": 1}}, "sise"), ({"rate": "fast"}, "rate")],
)
def test_bad_values_fail_naming_the_key(value, message):
    with pytest.raises(ValueError, match=f"^model: .*{message}"):
        from_plain(_Outer, value, name="model")


def test_nest_moves_flat_keys_and_keeps_groups():
    moves = {"lr": "optim.learning_rate", "tokenizer": "tokenizer.name", "num_overlays": "overlay_count"}
    flat = {"lr": 0.1, "tokenizer": "char", "num_overlays": 2, "other": [1]}
    nested = nest(flat, moves)
    assert nested == {
        "optim": {"learning_rate": 0.1},
        "tokenizer": {"name": "char"},
        "overlay_count": 2,
        "other": [1],
    }
    assert (
        nest(nested, moves) == nested
    )  # a nested layout passes unchanged (a group named like a flat key too)
    stored = {"optim": {"learning_rate": 0.1, "warmup_steps": 5}}
    assert nest({**stored, "lr": 0.5}, moves) == {"optim": {"learning_rate": 0.5, "warmup_steps": 5}}
    assert stored == {"optim": {"learning_rate": 0.1, "warmup_steps": 5}}  # inputs are not changed


def test_pick_lists_the_valid_names():
    table = {"cnn": 1, "timm": 2}
    assert pick(table, "timm", what="encoder") == 2
    with pytest.raises(ValueError, match="encoder: unknown name 'vit'; valid names: 'cnn', 'timm'"):
        pick(table, "vit", what="encoder")
