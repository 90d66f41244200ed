"""Speech metrics: corpus-level WER/CER, normalisation on both sides, word-boundary error."""

from __future__ import annotations

import math

import pytest

from multiattn.metrics.speech import (
    boundary_errors,
    error_counts,
    match_words,
    normalize_transcript,
)


def rate(references: list[str], hypotheses: list[str], unit: str = "word") -> float:
    counts = error_counts(references, hypotheses, unit=unit)
    return counts["errors"] / max(counts["reference_units"], 1)


def test_corpus_wer_is_not_mean_of_utterance_rates() -> None:
    refs = ["a b c d e f g h i j", "x y"]
    hyps = ["a b c d e f g h i j", "x z"]
    # corpus: 1 error / 12 words; the mean of per-utterance rates would be (0 + 0.5) / 2
    assert rate(refs, hyps) == pytest.approx(1 / 12)


def test_normalisation_applies_to_both_sides() -> None:
    assert rate(["Hello, World!"], ["hello world"]) == 0.0
    assert rate(["it's  fine"], ["IT'S fine."]) == 0.0
    assert normalize_transcript("  A-b  C ") == "a b c"


def test_cer_and_insertions_on_empty_reference() -> None:
    assert rate(["abc"], ["abd"], "char") == pytest.approx(1 / 3)
    assert rate(["a b", ""], ["a b", "c d"]) == pytest.approx(2 / 2)
    assert rate([""], [""]) == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="as many"):
        error_counts(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="lists"):
        error_counts("a b", "a b")


def test_match_words_keeps_only_correct_words() -> None:
    pairs = match_words(["the", "cat", "sat", "down"], ["the", "bat", "sat", "down", "now"])
    assert pairs == [(0, 0), (2, 2), (3, 3)]
    assert match_words([], ["a"]) == []


def test_boundary_errors() -> None:
    stats = boundary_errors([0.10, 0.50, 1.00, 2.0], [0.12, 0.43, 1.00, 2.2])
    assert stats["median_abs_error_ms"] == pytest.approx(45.0)
    assert stats["within_50ms"] == pytest.approx(0.5)
    assert stats["within_100ms"] == pytest.approx(0.75)
    assert stats["words"] == 4
    assert math.isnan(boundary_errors([], [])["median_abs_error_ms"])
