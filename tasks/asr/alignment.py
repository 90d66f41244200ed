"""Word timings from a recogniser's alignments: decoder attention and CTC forced alignment.

Two independent estimates of when each word starts:

* **attention**: the decoder's cross-attention row of the word's first token, over encoder
  frames; the frame of its maximum (``"argmax"``) or its centre of mass (``"centroid"``) becomes
  a time with :func:`multiattn.tasks.asr.model.frame_time` (40 ms frames after 4x subsampling). This is the
  alignment Chorowski et al. 2015 and Chan et al. 2016 plot.
* **CTC**: ``torchaudio.functional.forced_align`` (Viterbi over CTC paths, Graves et al. 2006)
  of the transcript's tokens on the CTC log-probabilities; a word starts at the first frame of
  its first token's span and ends after the last frame of its last token's span.

Words are given either as a string with one character per token (the character tokenizer's
``chars``) or as ``(word, first_token, last_token)`` ranges (any tokenizer's ``word_ranges``: with
sentencepiece a word starts at the piece that begins with ``▁``).

Shape legend: ``T`` output tokens (characters or pieces), ``S`` encoder frames, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torchaudio
from torch import Tensor

from multiattn.tasks.asr.model import FRAME_SECONDS, frame_time

__all__ = [
    "WordSpan",
    "WordRanges",
    "word_char_ranges",
    "attention_word_starts",
    "ctc_token_spans",
    "ctc_word_spans",
    "spans_matrix",
]


WordRanges = Sequence[tuple[str, int, int]]  # (word, first_token, last_token) per word


class WordSpan(NamedTuple):
    """A word with its start and end time in seconds, and its alignment probability.

    ``probability`` is the mean, over the word's tokens, of each token's mean CTC posterior on
    the frames the forced alignment gave it (1 = the model was certain of every frame).
    """

    word: str
    start: float
    end: float
    probability: float = 1.0


def word_char_ranges(text: str) -> list[tuple[str, int, int]]:
    """``(word, first_char_index, last_char_index)`` for each space-separated word of ``text``.

    Indices are character positions in ``text``, which are token positions for a character
    tokenizer.
    """
    ranges, start = [], None
    for index, char in enumerate(text + " "):
        if char != " " and start is None:
            start = index
        elif char == " " and start is not None:
            ranges.append((text[start:index], start, index - 1))
            start = None
    return ranges


def _ranges(words: str | WordRanges) -> tuple[list[tuple[str, int, int]], int]:
    """``(word ranges, tokens they need)`` of a one-character-per-token string or of ranges."""
    if isinstance(words, str):
        return word_char_ranges(words), len(words)
    ranges = [(word, int(first), int(last)) for word, first, last in words]
    return ranges, max((last + 1 for _, _, last in ranges), default=0)


def attention_word_starts(
    attention: Tensor, text: str | WordRanges, *, method: str = "argmax"
) -> list[float]:
    """Start time (s) of each word from an ``(T, S)`` attention map: the row of its first token.

    Args:
        attention: ``(T, S)``, ``T`` at least the tokens the words cover.
        text: one character per token (words split at spaces) or ``(word, first, last)`` ranges.
        method: ``"argmax"`` or ``"centroid"`` of the row.
    """
    if method not in ("argmax", "centroid"):
        raise ValueError(f"method: expected 'argmax' or 'centroid', received {method!r}")
    ranges, needed = _ranges(text)
    if not ranges:
        return []
    if attention.dim() != 2 or attention.shape[0] < needed:
        raise ValueError(f"attention: expected shape (>= {needed}, S), received {tuple(attention.shape)}")
    rows = attention[[first for _, first, _ in ranges]].float()  # (words, S)
    if method == "argmax":
        frames = rows.argmax(dim=1).float()
    else:
        positions = torch.arange(rows.shape[1], dtype=torch.float32)
        frames = (rows * positions).sum(1) / rows.sum(1).clamp(min=1e-8)
    return [float(frame_time(f)) for f in frames]


def ctc_token_spans(
    log_probs: Tensor, tokens: Sequence[int], *, blank_id: int = 0, with_scores: bool = False
) -> list[tuple[int, int]] | list[tuple[int, int, float]] | None:
    """``[start_frame, end_frame)`` of each token in the CTC forced alignment, ``None`` if impossible.

    Args:
        log_probs: ``(S, V)`` CTC log-probabilities of one utterance (valid frames only).
        tokens: the transcript's token ids (no blank).
        with_scores: add each token's mean posterior over its frames: ``(start, end, score)``.
    """
    if not tokens:
        return []
    targets = torch.tensor([list(tokens)], dtype=torch.int32, device=log_probs.device)
    repeats = sum(a == b for a, b in zip(tokens[:-1], tokens[1:]))
    if log_probs.shape[0] < len(tokens) + repeats:
        return None  # too few frames for this many labels
    aligned, scores = torchaudio.functional.forced_align(
        log_probs.detach().float().unsqueeze(0), targets, blank=blank_id
    )  # (1, S), (1, S), on the log-probabilities' device
    spans = torchaudio.functional.merge_tokens(aligned[0].cpu(), scores[0].exp().cpu(), blank=blank_id)
    if with_scores:
        return [(span.start, span.end, float(span.score)) for span in spans]
    return [(span.start, span.end) for span in spans]


def ctc_word_spans(
    log_probs: Tensor, tokens: Sequence[int], text: str | WordRanges, *, blank_id: int = 0
) -> list[WordSpan] | None:
    """Word start / end times (s) from the CTC forced alignment of ``tokens``.

    Args:
        log_probs: ``(S, V)`` CTC log-probabilities (valid frames only).
        tokens: the transcript's token ids.
        text: its words: one character per token (split at spaces) or ``(word, first, last)`` ranges.
        blank_id: the CTC blank.
    """
    ranges, needed = _ranges(text)
    spans = ctc_token_spans(log_probs, tokens, blank_id=blank_id, with_scores=True)
    if spans is None or len(spans) != len(tokens) or needed > len(tokens):
        return None
    out = []
    for word, first, last in ranges:
        start = frame_time(spans[first][0]) - FRAME_SECONDS / 2
        end = frame_time(spans[last][1] - 1) + FRAME_SECONDS / 2
        probability = sum(score for _, _, score in spans[first : last + 1]) / (last - first + 1)
        out.append(WordSpan(word, max(float(start), 0.0), float(end), float(probability)))
    return out


def spans_matrix(spans: Sequence[tuple[int, int]], num_frames: int) -> Tensor:
    """``(T, S)`` 0/1 matrix marking the frames of each token's CTC span (for overlays)."""
    matrix = torch.zeros(len(spans), num_frames)
    for row, (start, end) in enumerate(spans):
        matrix[row, start:end] = 1.0
    return matrix
