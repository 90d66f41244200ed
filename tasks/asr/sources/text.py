"""Transcript normalisation shared by every speech data source and by the model's metrics.

References and hypotheses must be normalised the same way before WER/CER (docs/conventions.md, "Metrics"), and
the default character vocabulary is a-z, apostrophe and space, so every transcript is mapped into
that alphabet here, once.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ALPHABET", "normalize_text"]

ALPHABET = "abcdefghijklmnopqrstuvwxyz' "
"""Characters a normalised transcript can contain (the default character vocabulary)."""

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'"})
_NOT_ALLOWED = re.compile(r"[^a-z' ]+")


def normalize_text(text: str) -> str:
    """Lower-case ``text`` and keep only a-z, apostrophes inside words and single spaces.

    Accents are stripped (``café -> cafe``), curly apostrophes become ``'``, every other character
    (digits, punctuation, hyphens) becomes a word break, and quote-like apostrophes at a word's
    edges are dropped (``'hello' -> hello``, ``don't`` is kept).

    Args:
        text: any transcript (LibriSpeech upper case, manifest text, user text).

    Returns:
        The normalised transcript; ``""`` when nothing is left.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    words = (w.strip("'") for w in _NOT_ALLOWED.sub(" ", ascii_text).split())
    return " ".join(w for w in words if w)
