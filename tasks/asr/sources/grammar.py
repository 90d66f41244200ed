"""A small English grammar for the embedded speech corpus: sentences of natural structure.

The corpus must read like speech (subject, verb, object, prepositional phrases, adjectives,
adverbs, numbers, questions, imperatives, contractions) rather than word salad, so that an
attention decoder has real language structure to learn while the acoustic model learns the
voices. Subject-verb agreement, tense and the regular inflections are handled here; the word lists
live in ``lexicon.py``. Output is lower-case a-z, apostrophe and single spaces.

Deterministic: :class:`SentenceGrammar` draws only from its own ``random.Random(seed)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from multiattn.tasks.asr.sources import lexicon
from multiattn.tasks.asr.sources.text import number_words  # one spelling for corpus and scoring

__all__ = ["SentenceGrammar", "generate_sentences", "number_words"]

_VOWELS = set("aeiou")


def _lines(block: str) -> list[list[str]]:
    seen: set[str] = set()
    rows = []
    for line in block.strip().splitlines():
        parts = line.split()
        if parts and parts[0] not in seen:
            seen.add(parts[0])
            rows.append(parts)
    return rows


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


def _third_person(base: str) -> str:
    if base == "have":
        return "has"
    if base.endswith(("s", "x", "ch", "sh", "o", "z")):
        return base + "es"
    if base.endswith("y") and base[-2] not in _VOWELS:
        return base[:-1] + "ies"
    return base + "s"


def _ing(base: str, past: str) -> str:
    """``-ing`` form; doubling is read off a regular past (``stop -> stopped``) or CVC for irregulars."""
    regular = past.endswith("ed")
    doubles = regular and len(past) >= len(base) + 3 and past[len(base)] == base[-1] and past[-2:] == "ed"
    cvc = (
        not regular
        and len(base) >= 3
        and base[-1] not in _VOWELS | set("wxy")
        and base[-2] in _VOWELS
        and base[-3] not in _VOWELS
    )
    if doubles or cvc:
        return base + base[-1] + "ing"
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        return base[:-1] + "ing"
    return base + "ing"


@dataclass(frozen=True)
class _Noun:
    singular: str
    plural: str


@dataclass(frozen=True)
class _Verb:
    base: str
    third: str
    past: str
    ing: str


def _nouns(block: str) -> list[_Noun]:
    return [_Noun(r[0], r[1] if len(r) > 1 else _plural(r[0])) for r in _lines(block)]


def _verbs(block: str) -> list[_Verb]:
    return [_Verb(r[0], _third_person(r[0]), r[1], _ing(r[0], r[1])) for r in _lines(block)]


def _words(block: str) -> list[str]:
    return [r[0] for r in _lines(block)]


_SUBJECT_PRONOUNS = {"i": "1sg", "you": "2", "he": "3sg", "she": "3sg", "we": "pl", "they": "pl"}
_OBJECT_PRONOUNS = ["me", "you", "him", "her", "us", "them", "it"]
_POSSESSIVES = ["my", "your", "his", "her", "our", "their"]
_MODALS = ["will", "can", "should", "must", "might", "could", "would"]
_NEGATED_MODALS = ["won't", "can't", "shouldn't", "couldn't", "wouldn't"]
_TIMES = [
    "yesterday",
    "today",
    "last night",
    "this morning",
    "in the afternoon",
    "in the evening",
    "at night",
]


class SentenceGrammar:
    """Random sentences from a phrase-structure grammar over :mod:`lexicon`.

    Args:
        seed: seed of the private random generator; equal seeds give equal sentence streams.
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.people = _nouns(lexicon.PEOPLE)
        self.animals = _nouns(lexicon.ANIMALS)
        self.things = _nouns(lexicon.THINGS) + _nouns(lexicon.FOODS)
        self.foods = _nouns(lexicon.FOODS)
        self.places = _nouns(lexicon.PLACES)
        self.transitive = _verbs(lexicon.TRANSITIVE_VERBS)
        self.intransitive = _verbs(lexicon.INTRANSITIVE_VERBS)
        self.adjectives = _words(lexicon.ADJECTIVES)
        self.manner = _words(lexicon.MANNER_ADVERBS)
        self.frequency = _words(lexicon.FREQUENCY_ADVERBS)
        self.names = _words(lexicon.NAMES)
        self.days = _words(lexicon.DAYS)
        self.months = _words(lexicon.MONTHS)
        self.prepositions = _words(lexicon.PLACE_PREPOSITIONS)
        self.units = _nouns(lexicon.UNITS)
        self._templates: list[tuple[float, Callable[[], str]]] = [
            (4.0, self._past_transitive),
            (2.0, self._present_habit),
            (2.5, self._past_intransitive),
            (1.5, self._modal),
            (1.5, self._progressive),
            (1.5, self._yes_no_question),
            (2.0, self._wh_question),
            (1.0, self._imperative),
            (1.5, self._copula),
            (1.0, self._there_is),
            (1.0, self._numbers),
            (1.0, self._negation),
            (1.0, self._compound),
        ]

    # ---- phrases -----------------------------------------------------------------------------
    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _adjectives(self, max_count: int = 2) -> list[str]:
        count = self.rng.choices(range(max_count + 1), weights=[4, 4, 1][: max_count + 1])[0]
        return self.rng.sample(self.adjectives, count)

    def _determiner(self, plural: bool) -> str:
        if plural:
            return self.rng.choice(["the", "some", "these", "those", "many", "a few", "", *_POSSESSIVES])
        return self.rng.choice(["the", "the", "a", "this", "that", "every", *_POSSESSIVES])

    def _common_np(self, pool: list[_Noun], plural: bool | None = None) -> tuple[str, str]:
        noun = self.rng.choice(pool)
        plural = self._chance(0.3) if plural is None else plural
        words = [*self._adjectives(), noun.plural if plural else noun.singular]
        det = self._determiner(plural)
        if det == "a" and words[0][0] in _VOWELS:
            det = "an"
        if det:
            words.insert(0, det)
        if self._chance(0.08):  # a possessor: "the baker's old cat"
            owner = self.rng.choice(self.people + self.animals).singular
            words = ["the", owner + "'s", *words[1:]]
        return " ".join(words), ("pl" if plural else "3sg")

    def _subject(self) -> tuple[str, str]:
        roll = self.rng.random()
        if roll < 0.2:
            return self.rng.choice(self.names), "3sg"
        if roll < 0.32:
            pronoun = self.rng.choice(list(_SUBJECT_PRONOUNS))
            return pronoun, _SUBJECT_PRONOUNS[pronoun]
        if roll < 0.36:
            a, b = self.rng.sample(self.names, 2)
            return f"{a} and {b}", "pl"
        return self._common_np(self.people if roll < 0.75 else self.animals)

    def _object(self) -> str:
        roll = self.rng.random()
        if roll < 0.06:
            return self.rng.choice(_OBJECT_PRONOUNS)
        if roll < 0.12:
            return self.rng.choice(self.names)
        if roll < 0.16:
            return number_words(self.rng.randint(2, 99)) + " " + self.rng.choice(self.things).plural
        pool = self.things if roll < 0.8 else (self.animals if roll < 0.9 else self.people)
        return self._common_np(pool)[0]

    def _place_pp(self) -> str:
        return self.rng.choice(self.prepositions) + " " + self._common_np(self.places, plural=False)[0]

    def _time(self, future: bool = False) -> str:
        roll = self.rng.random()
        if roll < 0.4:
            return self.rng.choice(["tomorrow", "next week", "later"] if future else _TIMES)
        if roll < 0.6:
            return self.rng.choice(["on", "next" if future else "last"]) + " " + self.rng.choice(self.days)
        if roll < 0.75:
            return "in " + self.rng.choice(self.months)
        if roll < 0.9:
            return "at " + number_words(self.rng.randint(1, 12)) + " o'clock"
        return "at half past " + number_words(self.rng.randint(1, 12))

    def _tail(
        self, place: float = 0.5, time: float = 0.3, manner: float = 0.2, future: bool = False
    ) -> list[str]:
        words = []
        if self._chance(manner):
            words.append(self.rng.choice(self.manner))
        if self._chance(place):
            words.append(self._place_pp())
        if self._chance(time):
            words.append(self._time(future))
        return words

    @staticmethod
    def _be(agreement: str, past: bool) -> str:
        if past:
            return "was" if agreement in ("1sg", "3sg") else "were"
        return {"1sg": "am", "3sg": "is"}.get(agreement, "are")

    @staticmethod
    def _present(verb: _Verb, agreement: str) -> str:
        return verb.third if agreement == "3sg" else verb.base

    # ---- sentence templates ------------------------------------------------------------------
    def _past_transitive(self) -> str:
        subject, _ = self._subject()
        verb = self.rng.choice(self.transitive)
        return " ".join([subject, verb.past, self._object(), *self._tail()])

    def _present_habit(self) -> str:
        subject, agreement = self._subject()
        verb = self.rng.choice(self.transitive + self.intransitive)
        words = [subject, self.rng.choice(self.frequency), self._present(verb, agreement)]
        if verb in self.transitive:
            words.append(self._object())
        if self._chance(0.4):
            words.append(self.rng.choice(["every day", "on " + self.rng.choice(self.days) + "s", "at night"]))
        return " ".join(words + self._tail(place=0.4, time=0.0))

    def _past_intransitive(self) -> str:
        subject, _ = self._subject()
        verb = self.rng.choice(self.intransitive)
        return " ".join([subject, verb.past, *self._tail(place=0.7, time=0.4, manner=0.4)])

    def _modal(self) -> str:
        subject, _ = self._subject()
        verb = self.rng.choice(self.transitive)
        return " ".join(
            [subject, self.rng.choice(_MODALS), verb.base, self._object(), *self._tail(future=True)]
        )

    def _progressive(self) -> str:
        subject, agreement = self._subject()
        past = self._chance(0.5)
        verb = self.rng.choice(self.transitive + self.intransitive)
        words = [subject, self._be(agreement, past), verb.ing]
        if verb in self.transitive:
            words.append(self._object())
        return " ".join(words + self._tail(place=0.6, time=0.3 if past else 0.0, manner=0.1))

    def _yes_no_question(self) -> str:
        subject, agreement = self._subject()
        verb = self.rng.choice(self.transitive)
        aux = self.rng.choice(["did", "does" if agreement == "3sg" else "do", "will", "can"])
        tail = self._tail(time=0.2 if aux in ("did", "will") else 0.0, manner=0.0, future=aux == "will")
        return " ".join([aux, subject, verb.base, self._object(), *tail])

    def _wh_question(self) -> str:
        roll = self.rng.random()
        subject, agreement = self._subject()
        if roll < 0.25:
            verb = self.rng.choice(self.intransitive)
            return " ".join([self.rng.choice(["where", "why", "when"]), "did", subject, verb.base])
        if roll < 0.5:
            noun = self.rng.choice(self.things)
            verb = self.rng.choice(self.transitive)
            return f"how many {noun.plural} did {subject} {verb.base} " + " ".join(self._tail(0.5, 0.4, 0.0))
        if roll < 0.75:
            verb = self.rng.choice(self.transitive)
            return " ".join(["who", verb.past, self._object(), *self._tail(manner=0.0)])
        verb = self.rng.choice(self.transitive)
        aux = "does" if agreement == "3sg" else "do"
        return " ".join(
            ["what", self.rng.choice(["did", aux]), subject, verb.base, *self._tail(0.7, 0.2, 0.0)]
        )

    def _imperative(self) -> str:
        verb = self.rng.choice(self.transitive)
        lead = self.rng.choice(["please", "", "", "don't", "let's"])
        words = [lead, verb.base, self._object(), *self._tail(place=0.6, time=0.1, manner=0.3)]
        return " ".join(w for w in words if w)

    def _copula(self) -> str:
        subject, agreement = self._common_np(self.rng.choice([self.things, self.animals, self.places]))
        past = self._chance(0.4)
        intensifier = self.rng.choice(["", "very", "quite", "too", "so", "not"])
        words = [subject, self._be(agreement, past), intensifier, self.rng.choice(self.adjectives)]
        if self._chance(0.3):
            words += ["and", self.rng.choice(self.adjectives)]
        return " ".join(w for w in words if w)

    def _there_is(self) -> str:
        count = self.rng.randint(1, 40)
        noun = self.rng.choice(self.things + self.animals)
        adjectives = self._adjectives(1)
        contracted = self._chance(0.3)
        if count == 1:
            lead = "there's" if contracted else "there is"
            np = " ".join(["a", *adjectives, noun.singular])
            np = "an" + np[1:] if np.split()[1][0] in _VOWELS else np
        else:
            lead = "there are"
            np = " ".join([number_words(count), *adjectives, noun.plural])
        return " ".join([lead, np, self._place_pp()])

    def _numbers(self) -> str:
        roll = self.rng.random()
        subject, agreement = self._subject()
        if roll < 0.4:
            value = self.rng.randint(2, 999)
            unit = self.rng.choice(self.units)
            place = self._common_np(self.places, plural=False)[0]
            return f"{place} is {number_words(value)} {unit.plural} away"
        if roll < 0.7:
            value = self.rng.choice([self.rng.randint(2, 99), self.rng.randint(100, 9999)])
            return f"{subject} paid {number_words(value)} dollars for {self._object()}"
        hour, minutes = self.rng.randint(1, 12), self.rng.randint(10, 59)
        verb = self.rng.choice(["leaves", "arrives", "opens", "closes", "starts"])
        return f"the {self.rng.choice(['train', 'bus', 'shop', 'show', 'class'])} {verb} at {number_words(hour)} {number_words(minutes)}"

    def _negation(self) -> str:
        subject, agreement = self._subject()
        verb = self.rng.choice(self.transitive)
        aux = self.rng.choice(["didn't", "doesn't" if agreement == "3sg" else "don't", *_NEGATED_MODALS])
        return " ".join([subject, aux, verb.base, self._object(), *self._tail(0.3, 0.3, 0.0)])

    def _compound(self) -> str:
        first = self._past_intransitive()
        second = self._past_transitive()
        return f"{first} {self.rng.choice(['and', 'but', 'because', 'so', 'while'])} {second}"

    # ---- public ------------------------------------------------------------------------------
    def sentence(self) -> str:
        """One sentence (lower-case words separated by single spaces)."""
        weights, makers = zip(*self._templates)
        maker = self.rng.choices(makers, weights=weights)[0]
        return " ".join(maker().split())


def generate_sentences(count: int, *, seed: int = 0, max_words: int = 20) -> list[str]:
    """``count`` distinct sentences, deterministic from ``seed`` (longer than ``max_words`` are skipped)."""
    grammar = SentenceGrammar(seed=seed)
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(f"grammar produced only {len(out)} distinct sentences of {count} asked")
        text = grammar.sentence()
        if text not in seen and len(text.split()) <= max_words:
            seen.add(text)
            out.append(text)
    return out
