"""Speech recognition metrics: corpus WER / CER (jiwer) and word-boundary error.

Word and character error rates are computed the way the field reports them: over the whole
corpus, ``(substitutions + deletions + insertions) / reference words`` summed over every
utterance, never the mean of per-utterance rates, after the *same* normalisation of references
and hypotheses (lower case, punctuation other than apostrophes removed, whitespace collapsed).
Counts come from ``jiwer.process_words`` / ``process_characters``; an empty reference (which
jiwer refuses) contributes its hypothesis words as insertions.

Word-boundary error (an attention-quality measure this project reports; compare Chorowski et al.
2015 on alignments): for every reference word that the hypothesis got right (a jiwer ``equal``
alignment), the absolute difference between the predicted and the true start time; reported as
the median in milliseconds and the share within 50 ms and 100 ms.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence

import jiwer

__all__ = [
    "normalize_transcript",
    "error_counts",
    "match_words",
    "boundary_errors",
]

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


def normalize_transcript(text: str) -> str:
    """Lower case, drop punctuation except apostrophes, collapse whitespace."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def _check_pair(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise ValueError("references / hypotheses: expected lists of strings, received a string")
    if len(references) != len(hypotheses):
        raise ValueError(
            f"expected as many hypotheses as references, received {len(hypotheses)} and {len(references)}"
        )


def error_counts(
    references: Sequence[str], hypotheses: Sequence[str], *, unit: str = "word"
) -> dict[str, int]:
    """Corpus totals ``{"errors", "reference_units", "substitutions", "deletions", "insertions"}``.

    Args:
        references: one reference transcript per utterance.
        hypotheses: one hypothesis per utterance, same order.
        unit: ``"word"`` or ``"char"``.
    """
    _check_pair(references, hypotheses)
    if unit not in ("word", "char"):
        raise ValueError(f"unit: expected 'word' or 'char', received {unit!r}")
    refs = [normalize_transcript(r) for r in references]
    hyps = [normalize_transcript(h) for h in hypotheses]
    counts = {"substitutions": 0, "deletions": 0, "insertions": 0, "reference_units": 0}
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    for _, h in ((r, h) for r, h in zip(refs, hyps) if not r):
        counts["insertions"] += len(h.split()) if unit == "word" else len(h)
    if pairs:
        process = jiwer.process_words if unit == "word" else jiwer.process_characters
        out = process([r for r, _ in pairs], [h for _, h in pairs])
        counts["substitutions"] += out.substitutions
        counts["deletions"] += out.deletions
        counts["insertions"] += out.insertions
        counts["reference_units"] += out.hits + out.substitutions + out.deletions
    counts["errors"] = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    return counts


def match_words(reference_words: Sequence[str], hypothesis_words: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs ``(reference_index, hypothesis_index)`` of words the hypothesis got right.

    Uses jiwer's minimum-edit alignment over the normalised words; only ``equal`` chunks count.
    """
    ref = [normalize_transcript(w) for w in reference_words]
    hyp = [normalize_transcript(w) for w in hypothesis_words]
    if not ref or not hyp:
        return []
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    pairs = []
    for chunk in out.alignments[0]:
        if chunk.type == "equal":
            for offset in range(chunk.ref_end_idx - chunk.ref_start_idx):
                pairs.append((chunk.ref_start_idx + offset, chunk.hyp_start_idx + offset))
    return pairs


def boundary_errors(predicted: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """Word-start error statistics over matched words (times in seconds).

    Args:
        predicted: predicted start time of each matched word.
        true: true start time of the same words.

    Returns:
        ``{"median_abs_error_ms", "mean_abs_error_ms", "within_50ms", "within_100ms", "words"}``
        (shares are fractions; NaN statistics when no word was matched).
    """
    if len(predicted) != len(true):
        raise ValueError(
            f"expected as many predicted as true times, received {len(predicted)} and {len(true)}"
        )
    errors = [abs(p - t) * 1000.0 for p, t in zip(predicted, true)]
    if not errors:
        nan = float("nan")
        return {
            "median_abs_error_ms": nan,
            "mean_abs_error_ms": nan,
            "within_50ms": nan,
            "within_100ms": nan,
            "words": 0,
        }
    return {
        "median_abs_error_ms": statistics.median(errors),
        "mean_abs_error_ms": statistics.fmean(errors),
        "within_50ms": sum(e <= 50.0 for e in errors) / len(errors),
        "within_100ms": sum(e <= 100.0 for e in errors) / len(errors),
        "words": len(errors),
    }
