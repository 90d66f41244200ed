"""Character tokenizer for speech recognition.

Ids: ``0`` blank (CTC) which doubles as padding, ``1`` bos/eos (one symbol, as in ESPnet's
``<sos/eos>``), ``2`` unk, then the characters. The default alphabet is ``a-z``, apostrophe and
space: what :func:`tasks.asr.sources.text.normalize_text`-style normalisation leaves. The whole
vocabulary is a plain list of strings, so it travels inside a checkpoint's hyper-parameters
(``torch.load(weights_only=True)`` works) and the checkpoint rebuilds its own tokenizer.

Shape legend: ``B`` batch, ``T`` tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["CharTokenizer", "DEFAULT_CHARS", "SPECIALS"]

BLANK, EOS, UNK = "<blank>", "<eos>", "<unk>"
SPECIALS = (BLANK, EOS, UNK)
DEFAULT_CHARS = tuple(string.ascii_lowercase) + ("'", " ")


class CharTokenizer:
    """Characters <-> ids, with CTC blank / padding, a shared bos/eos and unk.

    Args:
        vocab: the full vocabulary, specials first (as returned by :attr:`vocab`); ``None``
            builds the default ``specials + a-z ' space``.
    """

    def __init__(self, vocab: Sequence[str] | None = None) -> None:
        vocab = list(SPECIALS + DEFAULT_CHARS) if vocab is None else list(vocab)
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocab: expected the specials {list(SPECIALS)} first, received {vocab[:3]}")
        chars = vocab[len(SPECIALS) :]
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("vocab: expected distinct single characters after the specials")
        self.vocab = vocab
        self._index = {c: i for i, c in enumerate(vocab)}
        self.blank_id = 0
        self.pad_id = 0
        self.bos_id = 1
        self.eos_id = 1
        self.unk_id = 2

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def space_id(self) -> int | None:
        return self._index.get(" ")

    def encode(self, text: str) -> list[int]:
        """Characters -> ids (unknown characters -> unk). No bos/eos."""
        return [self._index.get(c, self.unk_id) for c in text]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids -> text; specials are dropped, spaces collapsed and stripped."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        chars = [self.vocab[i] for i in ids if i >= len(SPECIALS) and i < len(self.vocab)]
        return " ".join("".join(chars).split())

    def chars(self, ids: Sequence[int] | Tensor) -> str:
        """Ids -> one character per id (specials become ``?``), so positions match token positions."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.vocab[i] if len(SPECIALS) <= i < len(self.vocab) else "?" for i in ids)

    def batch_encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts -> ``(targets (B, T) long padded with pad_id, lengths (B,))``."""
        encoded = [self.encode(t) for t in texts]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        targets = torch.full(
            (len(encoded), int(lengths.max()) if encoded else 0), self.pad_id, dtype=torch.long
        )
        for row, ids in enumerate(encoded):
            targets[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return targets, lengths
