"""Transcript normalisation shared by every speech data source and by the model's metrics.

References and hypotheses must be normalised the same way before WER/CER (docs/conventions.md,
"Metrics"), and the default character vocabulary is a-z, apostrophe and space, so every transcript
is mapped into that alphabet here, once. Numbers, amounts, percentages, ordinals and clock times
written in digits are spelled as spoken (``$21.50 -> twenty one dollars fifty cents``) with the
same words the corpus generators use (:func:`number_words`), so a recogniser that writes digits
(Whisper) and one that spells (ours) are scored alike, and a sentence taken from a text source is
spoken by the synthesiser exactly as its transcript reads. Contractions stay one word
(``don't``, ``i'm``), as they are spoken.

The number spelling is written here rather than taken from a package (``num2words``): it must
give exactly the corpus grammar's words (British ``and`` after hundreds, no hyphens), and
``normalize_text`` runs in every base installation, which carries no text-processing dependency.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ALPHABET", "MAX_NUMBER", "normalize_text", "number_words", "ordinal_words", "spell_numbers"]

ALPHABET = "abcdefghijklmnopqrstuvwxyz' "
"""Characters a normalised transcript can contain (the default character vocabulary)."""

MAX_NUMBER = 10**12 - 1
"""The largest integer :func:`number_words` spells; longer digit strings are read digit by digit."""

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'"})
_NOT_ALLOWED = re.compile(r"[^a-z' ]+")
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_EXCEPTIONS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_CURRENCIES = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros")}


def number_words(value: int) -> str:
    """Spell ``0 <= value <= MAX_NUMBER`` in words (``342 -> "three hundred and forty two"``).

    ``and`` joins hundreds to what follows and a thousand (million, billion) to a remainder
    below one hundred: ``2005 -> "two thousand and five"``, ``2300 -> "two thousand three hundred"``.
    """
    if not 0 <= value <= MAX_NUMBER:
        raise ValueError(f"number_words supports 0..{MAX_NUMBER}, got {value}")
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    for scale, name in _SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            tail = "" if rest == 0 else (" and " if rest < 100 else " ") + number_words(rest)
            return f"{number_words(high)} {name}{tail}"
    raise AssertionError("unreachable")


def ordinal_words(value: int) -> str:
    """Spell an ordinal (``21 -> "twenty first"``, ``100 -> "one hundredth"``)."""
    words = number_words(value).split()
    last = words[-1]
    if last in _ORDINAL_EXCEPTIONS:
        words[-1] = _ORDINAL_EXCEPTIONS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _plural_words(words: str) -> str:
    """``"nineteen ninety" -> "nineteen nineties"`` (decades, ``1990s``)."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    return f"{head} {last}".strip()


def _integer(digits: str) -> str:
    """A digit string as words: a cardinal, or digit by digit (leading zero, or too long)."""
    digits = digits.replace(",", "")
    if (len(digits) > 1 and digits[0] == "0") or int(digits) > MAX_NUMBER:
        return " ".join(_ONES[int(d)] for d in digits)
    return number_words(int(digits))


def _decimal(text: str) -> str:
    """``"2.50" -> "two point five zero"``; ``"7" -> "seven"``."""
    whole, _, fraction = text.partition(".")
    words = _integer(whole) if whole else "zero"
    return words + ("" if not fraction else " point " + " ".join(_ONES[int(d)] for d in fraction))


def _money(match: re.Match[str]) -> str:
    one, many = _CURRENCIES[match["symbol"]]
    whole = int(match["whole"].replace(",", ""))
    words = _integer(match["whole"]) + " " + (one if whole == 1 else many)
    cents = match["cents"]
    if cents and int(cents):
        words += f" {number_words(int(cents))} " + ("cent" if int(cents) == 1 else "cents")
    scale = match["scale"]
    if scale:  # "$3 million": the unit follows the scale word
        words = f"{_integer(match['whole'])} {scale.lower()} {many}"
    return f" {words} "


_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"
_RULES: list[tuple[re.Pattern[str], object]] = [
    (
        re.compile(
            rf"(?P<symbol>[$£€])\s?(?P<whole>{_NUMBER})(?:\.(?P<cents>\d\d))?"
            r"(?:\s(?P<scale>million|billion|thousand)\b)?",
            re.IGNORECASE,
        ),
        _money,
    ),
    (re.compile(rf"(?P<n>(?:{_NUMBER})(?:\.\d+)?)\s?%"), lambda m: f" {_decimal(m['n'])} percent "),
    (
        re.compile(r"\b(?P<n>\d+)(?:st|nd|rd|th)\b", re.IGNORECASE),
        lambda m: f" {ordinal_words(int(m['n']))} " if int(m["n"]) <= MAX_NUMBER else f" {_integer(m['n'])} ",
    ),
    (
        re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d\d)\b"),
        lambda m: (
            f" {number_words(int(m['h']))} "
            + (
                "o'clock "
                if m["m"] == "00"
                else ("oh " if m["m"][0] == "0" else "") + _integer(m["m"].lstrip("0") or "0") + " "
            )
        ),
    ),
    (re.compile(r"\b(?P<n>\d+)'?s\b"), lambda m: f" {_plural_words(_integer(m['n']))} "),
    (re.compile(r"(?P<n>\d+\.\d+)"), lambda m: f" {_decimal(m['n'])} "),
    (re.compile(rf"(?P<n>{_NUMBER})"), lambda m: f" {_integer(m['n'])} "),
    (re.compile(r"&"), lambda m: " and "),
]


def spell_numbers(text: str) -> str:
    """Replace amounts, percentages, ordinals, clock times, decades and numbers by their words.

    Case and every other character are kept; ``normalize_text`` calls this before it lower-cases.
    """
    for pattern, replace in _RULES:
        text = pattern.sub(replace, text)  # type: ignore[arg-type]
    return text


def normalize_text(text: str) -> str:
    """Lower-case ``text`` and keep only a-z, apostrophes inside words and single spaces.

    Numbers written in digits are spelled first (:func:`spell_numbers`: ``3 -> three``,
    ``1,200 -> one thousand two hundred``, ``2.5 -> two point five``, ``3rd -> third``,
    ``$5 -> five dollars``, ``10% -> ten percent``, ``7:30 -> seven thirty``, ``1990s ->
    one thousand nine hundred and nineties``), ``&`` becomes ``and``. Accents are stripped
    (``café -> cafe``), curly apostrophes become ``'``, every other character (punctuation,
    hyphens) becomes a word break, and quote-like apostrophes at a word's edges are dropped
    (``'hello' -> hello``, ``don't`` is kept). Idempotent: a normalised text normalises to itself.

    Args:
        text: any transcript (LibriSpeech upper case, manifest text, user text, a hypothesis).

    Returns:
        The normalised transcript; ``""`` when nothing is left.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_text = spell_numbers(ascii_text).lower()
    words = (w.strip("'") for w in _NOT_ALLOWED.sub(" ", ascii_text).split())
    return " ".join(w for w in words if w)
