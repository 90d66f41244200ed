"""Checks shared by the tests of the captioning scene generators."""

from __future__ import annotations

from typing import Any

from multiattn.tasks.captioning.sources.scenes import COLOURS, SHAPES, SIZES


def assert_words_name_their_objects(
    words: list[str], owners: list[int], objects: list[dict[str, Any]]
) -> None:
    """Each colour, shape or size word points at an object with that attribute; other words at none (-1)."""
    assert len(words) == len(owners)
    for word, owner in zip(words, owners):
        if word in COLOURS:
            assert objects[owner]["colour"] == word
        elif word in SHAPES:
            assert objects[owner]["shape"] == word
        elif word in SIZES:
            assert objects[owner]["size"] == word
        else:
            assert owner == -1
