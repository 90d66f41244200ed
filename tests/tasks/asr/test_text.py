"""The transcript normaliser: numbers and contractions spelled as spoken, one way for training and scoring."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiattn.tasks.asr.sources.text import (
    ALPHABET,
    MAX_NUMBER,
    normalize_text,
    number_words,
    ordinal_words,
)

_WORD_VALUES = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
} | {
    w: 10 * i
    for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
    if i > 1
}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}


def _words_to_number(text: str) -> int:
    """Read a spelled cardinal back (the inverse the round-trip test checks against)."""
    total, group = 0, 0
    for word in text.split():
        if word == "and":
            continue
        if word == "hundred":
            group *= 100
        elif word in _SCALES:
            total += group * _SCALES[word]
            group = 0
        else:
            group += _WORD_VALUES[word]
    return total + group


def _sample_numbers() -> list[int]:
    rng = random.Random(0)
    values = list(range(0, 1200)) + [1999, 2000, 2005, 10**6, 10**9, MAX_NUMBER]
    values += [rng.randint(0, 10**k) for k in range(3, 13) for _ in range(40)]
    return values


def test_numbers_round_trip():
    for value in _sample_numbers():
        words = number_words(value)
        assert _words_to_number(words) == value, (value, words)
        # digits and their spelling normalise to the same words, and the words are a fixed point
        assert normalize_text(str(value)) == words
        assert normalize_text(f"{value:,}") == words
        assert normalize_text(words) == words


def test_number_forms_as_spoken():
    cases = {
        "I paid $21.50 on the 3rd of May, 2019.": "i paid twenty one dollars fifty cents on the third of may two thousand and nineteen",
        "10% of 1,200 people": "ten percent of one thousand two hundred people",
        "at 7:05 and 10:00": "at seven oh five and ten o'clock",
        "$1 and £3 million": "one dollar and three million pounds",
        "007 and 2.5": "zero zero seven and two point five",
        "Tom & Jerry": "tom and jerry",
        "the 21st and 100th": "the twenty first and one hundredth",
    }
    for raw, spoken in cases.items():
        assert normalize_text(raw) == spoken
        assert normalize_text(spoken) == spoken
    assert [ordinal_words(n) for n in (1, 2, 3, 5, 8, 9, 12, 20, 40, 1000)] == [
        "first",
        "second",
        "third",
        "fifth",
        "eighth",
        "ninth",
        "twelfth",
        "twentieth",
        "fortieth",
        "one thousandth",
    ]


def test_contractions_round_trip():
    for raw, spoken in {
        "I’m sure you don’t": "i'm sure you don't",
        "It's the dog's bone, isn't it?": "it's the dog's bone isn't it",
        "'Quoted' they'll say": "quoted they'll say",
        "we've WON'T y'all": "we've won't y'all",
    }.items():
        assert normalize_text(raw) == spoken
        assert normalize_text(spoken) == spoken


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZé'’ 0123456789.,$%:&-!s\nt")), max_size=40))
def test_normalize_is_idempotent_and_in_alphabet(text):
    once = normalize_text(text)
    assert set(once) <= set(ALPHABET)
    assert normalize_text(once) == once
    assert "  " not in once and once == once.strip()


def test_number_words_range():
    with pytest.raises(ValueError):
        number_words(-1)
    assert (
        normalize_text("1234567890123") == "one two three four five six seven eight nine zero one two three"
    )
