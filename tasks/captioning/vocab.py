"""Caption tokenizer and vocabulary, built from the training split only.

The tokenizer is deliberately simple and documented: lower-case, every character that is not a
letter, digit or apostrophe becomes a space, split on whitespace. It matches what the Karpathy
split JSON stores as ``tokens`` and the simple fallback tokenizer of
:mod:`multiattn.metrics.captioning`, so training targets and scored captions agree.

The vocabulary travels inside checkpoints as a plain ``list[str]`` (index = token id), so
``torch.load(weights_only=True)`` can read it. A word seen only in validation or test captions
never enters it (a leak common in published implementations; docs/conventions.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from multiattn.metrics.captioning import simple_tokenize

__all__ = ["PAD", "BOS", "EOS", "UNK", "SPECIALS", "tokenize", "Vocabulary"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


def tokenize(text: str) -> list[str]:
    """Lower-case words of ``text`` without punctuation (``"A dog, running."`` -> ``["a", "dog", "running"]``)."""
    return simple_tokenize(text).split()


class Vocabulary:
    """Word <-> id mapping with ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.

    Args:
        words: every entry, specials first (as returned by :meth:`to_list`).

    Attributes:
        pad_id, bos_id, eos_id, unk_id: the specials' ids (their places in :data:`SPECIALS`).
    """

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3  # the places of PAD, BOS, EOS, UNK in SPECIALS

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary: expected the specials {SPECIALS} first, received {words[:4]}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary: duplicate words")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Iterable[str | Sequence[str]], *, min_count: int = 1) -> Vocabulary:
        """Count words over ``captions`` (strings or token lists) and keep those seen ``min_count`` times.

        Words are ordered by decreasing count, then alphabetically, so the result is deterministic.
        """
        counts: Counter[str] = Counter()
        for caption in captions:
            counts.update(tokenize(caption) if isinstance(caption, str) else caption)
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
            key=lambda w: (-counts[w], w),
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def encode(self, caption: str | Sequence[str], *, max_len: int | None = None) -> list[int]:
        """``<bos> w1 .. wn <eos>`` ids (unknown words -> ``<unk>``); at most ``max_len`` words kept."""
        words = tokenize(caption) if isinstance(caption, str) else list(caption)
        if max_len is not None:
            words = words[:max_len]
        return [self.bos_id, *(self.index.get(w, self.unk_id) for w in words), self.eos_id]

    def decode_words(self, ids: Iterable[int]) -> list[str]:
        """Words for ``ids``, stopping at ``<eos>`` and skipping ``<pad>`` / ``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(self.words[i] if 0 <= i < len(self.words) else UNK)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.decode_words(ids))

    def to_list(self) -> list[str]:
        """The plain list that goes into checkpoints."""
        return list(self.words)
