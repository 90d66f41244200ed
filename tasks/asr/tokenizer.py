"""Tokenizers for speech recognition: characters (default) or sentencepiece pieces (optional).

Both share one id layout, which the model, CTC and the searches rely on: ``0`` blank (CTC) which
doubles as padding, ``1`` bos/eos (one symbol, as in ESPnet's ``<sos/eos>``), ``2`` unk, then the
units. Both travel inside a checkpoint as plain Python types (``torch.load(weights_only=True)``
works), so a checkpoint rebuilds its own tokenizer without the data:

* :class:`CharTokenizer`: ``a-z``, apostrophe and space (what
  :func:`multiattn.tasks.asr.sources.text.normalize_text`-style normalisation leaves); the vocabulary is a
  plain list of strings.
* :class:`SentencePieceTokenizer`: BPE (Sennrich et al. 2016) or unigram (Kudo 2018) pieces from
  the ``sentencepiece`` library (Kudo and Richardson 2018), trained on the training transcripts
  only, deterministically (one thread, the whole input, no sampling); the trained model is a
  base64 string of its serialized protobuf. A piece starting with ``▁`` begins a word.

Words and token positions: :meth:`word_ranges` gives ``(word, first_token, last_token)`` for each
word, so word timings (the first token's attention row, CTC spans) work for pieces as for
characters.

Shape legend: ``B`` batch, ``T`` tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import base64
import io
import string
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from multiattn.io import UserError

__all__ = [
    "CharTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "build_tokenizer",
    "train_sentencepiece",
    "DEFAULT_CHARS",
    "SPECIALS",
    "TOKENIZERS",
    "WORD_START",
]

BLANK, EOS, UNK = "<blank>", "<eos>", "<unk>"
SPECIALS = (BLANK, EOS, UNK)
DEFAULT_CHARS = tuple(string.ascii_lowercase) + ("'", " ")
TOKENIZERS = ("char", "sentencepiece")
SENTENCEPIECE_TYPES = ("bpe", "unigram")
WORD_START = "\u2581"  # sentencepiece's "▁": the piece begins a word


def _pad_batch(encoded: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Id lists -> ``(targets (B, T) long padded with pad_id, lengths (B,))``."""
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
    targets = torch.full((len(encoded), int(lengths.max()) if encoded else 0), pad_id, dtype=torch.long)
    for row, ids in enumerate(encoded):
        targets[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return targets, lengths


def _as_list(ids: Sequence[int] | Tensor) -> list[int]:
    return ids.tolist() if isinstance(ids, Tensor) else list(ids)


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
        chars = [self.vocab[i] for i in _as_list(ids) if len(SPECIALS) <= i < len(self.vocab)]
        return " ".join("".join(chars).split())

    def chars(self, ids: Sequence[int] | Tensor) -> str:
        """Ids -> one character per id (specials become ``?``), so positions match token positions."""
        return "".join(self.vocab[i] if len(SPECIALS) <= i < len(self.vocab) else "?" for i in _as_list(ids))

    def token_labels(self, ids: Sequence[int] | Tensor) -> list[str]:
        """One label per id (overlay rows): the character, or ``?`` for a special."""
        return list(self.chars(ids))

    def word_ranges(self, ids: Sequence[int] | Tensor) -> list[tuple[str, int, int]]:
        """``(word, first_token, last_token)`` per space-separated word.

        Specials inside a word belong to it but add no letter; words equal ``decode(ids).split()``.
        """
        ranges: list[tuple[str, int, int]] = []
        letters: list[str] = []
        first = last = -1
        for index, token in enumerate([*_as_list(ids), None]):
            is_space = token is None or token == self.space_id
            if is_space:
                if letters:
                    ranges.append(("".join(letters), first, last))
                letters, first = [], -1
                continue
            first = index if first < 0 else first
            last = index
            if len(SPECIALS) <= token < len(self.vocab):  # specials sit inside the word, add no letter
                letters.append(self.vocab[token])
        return ranges

    def batch_encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts -> ``(targets (B, T) long padded with pad_id, lengths (B,))``."""
        return _pad_batch([self.encode(t) for t in texts], self.pad_id)


def _import_sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise UserError(
            "tokenizer sentencepiece: the sentencepiece package is not installed: "
            'pip install "multiattn[sentencepiece]"'
        ) from None
    return sentencepiece


def train_sentencepiece(texts: Iterable[str], *, vocab_size: int, model_type: str = "bpe") -> bytes:
    """Train a sentencepiece model on ``texts`` (the training transcripts) with the shared id layout.

    Deterministic: one thread, every sentence (no sampling or shuffling), no normalisation beyond
    the corpus's own (transcripts are already normalised; ``identity`` also keeps the model small).
    ``vocab_size`` is an upper bound: a corpus too small for it yields fewer pieces.

    Returns:
        The serialized model (protobuf bytes).
    """
    spm = _import_sentencepiece()
    if model_type not in SENTENCEPIECE_TYPES:
        raise ValueError(f"model_type: expected one of {list(SENTENCEPIECE_TYPES)}, received {model_type!r}")
    sentences = [" ".join(t.split()) for t in texts]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise UserError("tokenizer sentencepiece: no training transcript to train on")
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=writer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            normalization_rule_name="identity",
            pad_id=0,
            pad_piece=BLANK,
            eos_id=1,
            eos_piece=EOS,
            unk_id=2,
            unk_piece=UNK,
            bos_id=-1,  # bos is eos (id 1), as for characters
            hard_vocab_limit=False,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as err:  # e.g. vocab_size smaller than the alphabet
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"tokenizer sentencepiece (vocab_size {vocab_size}): {first[:200]}") from None
    return writer.getvalue()


class SentencePieceTokenizer:
    """Sentencepiece pieces <-> ids, in the same id layout as :class:`CharTokenizer`.

    Created untrained (the model needs the training transcripts, which the system sees at
    ``setup``); :meth:`train` or a stored ``model`` makes it usable.

    Args:
        vocab_size: ``V``, the model's output size; the trained model has at most this many pieces
            (ids beyond its pieces are never targets and decode to nothing).
        model_type: ``"bpe"`` or ``"unigram"``.
        model: a trained model as returned by :attr:`model` (base64 of the serialized protobuf).
    """

    def __init__(self, *, vocab_size: int = 256, model_type: str = "bpe", model: str | None = None) -> None:
        self._spm = _import_sentencepiece()
        if model_type not in SENTENCEPIECE_TYPES:
            raise ValueError(
                f"model_type: expected one of {list(SENTENCEPIECE_TYPES)}, received {model_type!r}"
            )
        if vocab_size <= len(SPECIALS):
            raise ValueError(f"vocab_size: expected more than {len(SPECIALS)}, received {vocab_size}")
        self.vocab_size = vocab_size
        self.model_type = model_type
        self.model: str | None = None
        self._processor = None
        self.blank_id = 0
        self.pad_id = 0
        self.bos_id = 1
        self.eos_id = 1
        self.unk_id = 2
        if model is not None:
            self.load(model)

    @property
    def trained(self) -> bool:
        return self._processor is not None

    def train(self, texts: Iterable[str]) -> None:
        """Train on ``texts`` (training transcripts only) and load the result."""
        model = train_sentencepiece(texts, vocab_size=self.vocab_size, model_type=self.model_type)
        self.load(base64.b64encode(model).decode("ascii"))

    def load(self, model: str) -> None:
        """Load a model given as base64 text (:attr:`model`); checks the id layout."""
        try:
            proto = base64.b64decode(model.encode("ascii"), validate=True)
            processor = self._spm.SentencePieceProcessor(model_proto=proto)
        except Exception as err:  # binascii.Error, RuntimeError from the C++ parser
            raise UserError(f"sentencepiece model: not a valid serialized model ({err})") from None
        layout = [processor.id_to_piece(i) for i in range(min(len(SPECIALS), processor.get_piece_size()))]
        if tuple(layout) != SPECIALS or processor.bos_id() != -1:
            raise UserError(
                f"sentencepiece model: expected the specials {list(SPECIALS)} first, received {layout}"
            )
        if processor.get_piece_size() > self.vocab_size:
            raise UserError(
                f"sentencepiece model: {processor.get_piece_size()} pieces exceed "
                f"vocab_size {self.vocab_size}"
            )
        self._processor, self.model = processor, model

    def _sp(self):
        if self._processor is None:
            raise UserError(
                "tokenizer sentencepiece: not trained yet (it is trained on the training transcripts "
                "when `fit` starts; other stages need a checkpoint: --ckpt_path)"
            )
        return self._processor

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def num_pieces(self) -> int:
        """Pieces of the trained model (``<= vocab_size``)."""
        return self._sp().get_piece_size()

    def _is_piece(self, token: int) -> bool:
        return len(SPECIALS) <= token < self._sp().get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Text -> piece ids (unknown characters -> unk). No bos/eos."""
        return list(self._sp().encode(" ".join(text.split()), out_type=int))

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids -> text; specials (and ids beyond the pieces) are dropped, spaces collapsed."""
        pieces = [t for t in _as_list(ids) if self._is_piece(t)]
        return " ".join(self._sp().decode(pieces).split())

    def pieces(self, ids: Sequence[int] | Tensor) -> list[str]:
        """The piece of each id (``<blank>`` etc. for specials, ``?`` beyond the pieces)."""
        sp = self._sp()
        return [sp.id_to_piece(t) if 0 <= t < sp.get_piece_size() else "?" for t in _as_list(ids)]

    def token_labels(self, ids: Sequence[int] | Tensor) -> list[str]:
        """One label per id (overlay rows): the piece, ``▁`` shown as ``␣``."""
        return [p.replace(WORD_START, "␣") for p in self.pieces(ids)]

    def word_ranges(self, ids: Sequence[int] | Tensor) -> list[tuple[str, int, int]]:
        """``(word, first_token, last_token)`` per word; a word starts at a piece beginning with ``▁``.

        Specials inside a word belong to it but add no letter; words equal ``decode(ids).split()``.
        """
        ranges: list[tuple[str, int, int]] = []
        word = ""
        first = last = -1
        for index, (token, piece) in enumerate(zip(_as_list(ids), self.pieces(ids))):
            starts_word = self._is_piece(token) and piece.startswith(WORD_START)
            if starts_word or first < 0:
                if word:
                    ranges.append((word, first, last))
                word, first = "", index
            last = index
            if self._is_piece(token):
                word += piece.removeprefix(WORD_START)
        if word:
            ranges.append((word, first, last))
        return ranges

    def batch_encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts -> ``(targets (B, T) long padded with pad_id, lengths (B,))``."""
        return _pad_batch([self.encode(t) for t in texts], self.pad_id)


Tokenizer = CharTokenizer | SentencePieceTokenizer


def build_tokenizer(
    kind: str = "char",
    *,
    vocab: Sequence[str] | None = None,
    vocab_size: int = 256,
    model_type: str = "bpe",
    model: str | None = None,
) -> Tokenizer:
    """The tokenizer named by ``kind``.

    ``"char"`` -> :class:`CharTokenizer` (``vocab``); ``"sentencepiece"`` ->
    :class:`SentencePieceTokenizer` (``vocab_size``, ``model_type``, ``model``).
    """
    if kind == "char":
        return CharTokenizer(vocab)
    if kind == "sentencepiece":
        if vocab is not None:
            raise ValueError("vocab: only for tokenizer 'char' (sentencepiece stores its own model)")
        return SentencePieceTokenizer(vocab_size=vocab_size, model_type=model_type, model=model)
    raise ValueError(f"tokenizer: expected one of {list(TOKENIZERS)}, received {kind!r}")
