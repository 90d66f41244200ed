"""Open-vocabulary text for the speech corpus: real usage examples, a wide grammar, a held-out domain.

Three offline sources, each read from a package (nothing is downloaded):

* **WordNet usage examples** (Debian ``wordnet-base``: ``/usr/share/wordnet/data.{noun,verb,adj,adv}``):
  the quoted examples of the glosses, about 48,000, e.g. ``"he acted with the best of motives"``.
  Written by lexicographers over many topics, they are the real-language part of the training
  text. :func:`wordnet_examples`.
* **A wide grammar** (:class:`WideGrammar`): the corpus grammar (``grammar.py``) with its word
  pools widened by every word of a frequency list (``wordfreq``'s most frequent English words,
  20,000 by default) that WordNet files as a person, animal, thing, food, place, verb,
  adjective or manner adverb, with WordNet's irregular forms (``noun.exc``, ``verb.exc``) and
  verb frames (transitive or not). Sentences of natural structure over a large vocabulary.
  :func:`wide_lexicon`.
* **The held-out text domain** (Debian ``fortunes-min``: ``/usr/share/games/fortunes/{fortunes,
  literature,riddles}``): quips, quotations and riddles, sentence by sentence. Never used for
  training or tuning; it is the ``test_heldout_text`` split. :func:`fortune_sentences`.

Every sentence goes through :func:`spoken_sentence`: sentences a synthesiser would not speak as
their transcript reads (acronyms, abbreviations, symbols, several sentences, ellipses) are
dropped, the rest normalised with :func:`multiattn.tasks.asr.sources.text.normalize_text` (numbers
spelled as spoken), so the synthesiser speaks exactly the transcript, and training and scoring
share one normalisation.

:func:`open_vocabulary_texts` deals the sentences out: evaluation sentences are drawn first, from
the same sources as training, and removed from the training text; the held-out domain is
removed from it too. So no validation or test sentence is in the training text, which is what the
audio, the tokenizer and the language model are trained on.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from multiattn.io import UserError
from multiattn.tasks.asr.sources.grammar import SentenceGrammar, _ing, _Noun, _plural, _third_person, _Verb
from multiattn.tasks.asr.sources.text import normalize_text

__all__ = [
    "WORDNET_DIR",
    "FORTUNES_DIR",
    "FORTUNE_FILES",
    "WideLexicon",
    "WideGrammar",
    "spoken_sentence",
    "wordnet_examples",
    "fortune_sentences",
    "wide_lexicon",
    "open_vocabulary_texts",
]

WORDNET_DIR = "/usr/share/wordnet"
"""Where Debian's ``wordnet-base`` puts WordNet 3.0's database files."""
FORTUNES_DIR = "/usr/share/games/fortunes"
"""Where Debian's ``fortunes-min`` puts its fortune files."""
FORTUNE_FILES = ("fortunes", "literature", "riddles")
"""The fortune files of ``fortunes-min`` read for the held-out text domain."""

MIN_WORDS, MAX_WORDS = 3, 20
_BAD_CHARACTERS = re.compile(r"[()\[\]{}/\\=<>@#*_~^|+]")
_ACRONYM = re.compile(r"\b(?!I\b)[A-Z]{2,}\b")  # spoken letter by letter, or not as written
_INNER_PERIOD = re.compile(r"[A-Za-z]\.\s*\S")  # abbreviations ("Mr.", "e.g.") or a second sentence
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z])")
# A few words of the frequency list that a training text should not teach (profanity, slurs).
_BLOCKED = frozenset(
    "fuck fucking fucked shit shitty bitch bitches cunt twat whore slut nigger nigga faggot fag "
    "retard retarded dick cock pussy wank wanker bastard".split()
)
# WordNet 3.0 lexicographer file numbers (lexnames(5WN)) of the grammar's noun pools.
_NOUN_FILES = {
    "people": (18,),  # noun.person
    "animals": (5,),  # noun.animal
    "things": (6, 13, 17, 20, 27),  # noun.artifact, food, object, plant, substance
    "foods": (13,),  # noun.food
    "places": (15,),  # noun.location
}
_TRANSITIVE_FRAMES = {8, 9, 10, 11}  # "Somebody ----s something" ...
_INTRANSITIVE_FRAMES = {1, 2}  # "Something ----s", "Somebody ----s"
_PARTICIPLE_FILE = 44  # adj.ppl ("laced", "packed")
_POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_FUNCTION_WORDS = 300  # the list's most frequent words: determiners, pronouns, auxiliaries


def _require_wordnet(wordnet_dir: str | Path) -> Path:
    folder = Path(wordnet_dir)
    if not (folder / "data.noun").is_file():
        raise UserError(
            f"{folder / 'data.noun'}: WordNet's database is missing; the open-vocabulary speech "
            "corpus needs it: apt-get install wordnet-base"
        )
    return folder


def spoken_sentence(raw: str, *, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> str | None:
    """The normalised transcript of one written sentence, or ``None`` when it should not be spoken.

    Dropped: acronyms (``DNA``: read letter by letter or as a word, not as written), abbreviations
    and inner full stops (``Mr.``, ``e.g.``, two sentences), ellipses, symbols a reader would not
    say (``/ = < > @ # * _ ~ ^ | + ( ) [ ] { }``), blocked words, and texts shorter than
    ``min_words`` or longer than ``max_words`` words once normalised.
    """
    text = " ".join(raw.split()).strip()
    body = text.rstrip(" .!?;:'\"")
    if not body or "..." in text or _BAD_CHARACTERS.search(text) or _ACRONYM.search(text):
        return None
    if _INNER_PERIOD.search(re.sub(r"\d\.\d", "0", body)):
        return None
    spoken = normalize_text(text)
    words = spoken.split()
    if not min_words <= len(words) <= max_words or any(w in _BLOCKED for w in words):
        return None
    return spoken


def _unique(sentences: Iterable[str | None]) -> list[str]:
    seen: set[str] = set()
    out = []
    for sentence in sentences:
        if sentence and sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def _wordnet_lines(folder: Path, pos: str) -> Iterable[str]:
    with open(folder / f"data.{_POS_FILES[pos]}", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith(" "):  # the licence header lines start with two spaces
                yield line


def wordnet_examples(wordnet_dir: str | Path = WORDNET_DIR) -> list[str]:
    """Every usable quoted usage example of WordNet's glosses, spoken form, in file order, unique."""
    folder = _require_wordnet(wordnet_dir)
    examples = (
        spoken_sentence(quote)
        for pos in _POS_FILES
        for line in _wordnet_lines(folder, pos)
        for quote in re.findall(r'"([^"]+)"', line.partition(" | ")[2])
    )
    return _unique(examples)


def fortune_sentences(
    fortunes_dir: str | Path = FORTUNES_DIR, files: Iterable[str] = FORTUNE_FILES
) -> list[str]:
    """The held-out text domain: fortune-file entries cut into sentences, spoken form, unique.

    Attribution lines (``-- Author``) are dropped, and the ``Q:`` / ``A:`` labels of riddles; the
    other lines of an entry are joined and cut at sentence ends.
    """
    folder = Path(fortunes_dir)
    paths = [folder / name for name in files]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise UserError(
            f"{missing[0]}: fortune file missing; the held-out text domain needs it: apt-get install fortunes-min"
        )
    sentences = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
            lines = [  # attributions out, riddles' "Q:" / "A:" labels off
                re.sub(r"^\s*[QA]:\s*", "", line)
                for line in entry.splitlines()
                if not line.strip().startswith("--")
            ]
            joined = " ".join(" ".join(lines).split())
            sentences.extend(spoken_sentence(part) for part in _SENTENCE_END.split(joined))
    return _unique(sentences)


@dataclass
class WideLexicon:
    """Word pools of :class:`WideGrammar` (each adds to the grammar's own lexicon).

    Attributes:
        people / animals / things / foods / places: nouns (singular and plural).
        transitive / intransitive: verbs with their inflections.
        adjectives / manner: adjectives and ``-ly`` manner adverbs.
    """

    people: list[_Noun] = field(default_factory=list)
    animals: list[_Noun] = field(default_factory=list)
    things: list[_Noun] = field(default_factory=list)
    foods: list[_Noun] = field(default_factory=list)
    places: list[_Noun] = field(default_factory=list)
    transitive: list[_Verb] = field(default_factory=list)
    intransitive: list[_Verb] = field(default_factory=list)
    adjectives: list[str] = field(default_factory=list)
    manner: list[str] = field(default_factory=list)

    def words(self) -> set[str]:
        """Every distinct word form the pools can produce."""
        out: set[str] = set()
        for noun in self.people + self.animals + self.things + self.foods + self.places:
            out.update((noun.singular, noun.plural))
        for verb in self.transitive + self.intransitive:
            out.update((verb.base, verb.third, verb.past, verb.ing))
        return out | set(self.adjectives) | set(self.manner)


def _regular_past(base: str) -> str:
    """``-ed`` past of a regular verb; a final consonant doubles only in a one-syllable CVC word."""
    vowels = "aeiou"
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2] not in vowels:
        return base[:-1] + "ied"
    syllables = len(re.findall(r"[aeiouy]+", base))
    if syllables == 1 and len(base) >= 3 and base[-1] not in vowels + "wxy" and base[-2] in vowels:
        if base[-3] not in vowels:
            return base + base[-1] + "ed"
    return base + "ed"


def _exceptions(folder: Path, pos: str) -> dict[str, str]:
    """``{base: first irregular form}`` from ``<pos>.exc`` (lines ``inflected base``)."""
    table: dict[str, str] = {}
    path = folder / f"{_POS_FILES[pos]}.exc"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                table.setdefault(parts[1], parts[0])
    return table


def _first_senses(folder: Path, pos: str) -> dict[str, tuple[int, str]]:
    """``{lemma: (number of senses, offset of the most frequent sense)}`` from ``index.<pos>``."""
    senses: dict[str, tuple[int, str]] = {}
    with open(folder / f"index.{_POS_FILES[pos]}", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(" "):
                continue
            parts = line.split()
            synset_count, pointer_count = int(parts[2]), int(parts[3])
            offsets = parts[6 + pointer_count :]
            if offsets:
                senses[parts[0]] = (synset_count, offsets[0])
    return senses


def _synsets(folder: Path, pos: str) -> dict[str, tuple[int, set[int], set[str]]]:
    """``{offset: (lexicographer file, verb frame numbers, its words as written)}`` from ``data.<pos>``."""
    out: dict[str, tuple[int, set[int], set[str]]] = {}
    for line in _wordnet_lines(folder, pos):
        parts = line.partition(" | ")[0].split()
        if len(parts) < 4:
            continue
        word_count = int(parts[3], 16)
        cursor = 4 + 2 * word_count
        pointer_count = int(parts[cursor])
        cursor += 1 + 4 * pointer_count
        frames: set[int] = set()
        if pos == "v" and cursor < len(parts):
            frame_count = int(parts[cursor])
            frames = {int(parts[cursor + 2 + 3 * i]) for i in range(frame_count)}
        out[parts[0]] = (int(parts[1]), frames, set(parts[4 : 4 + 2 * word_count : 2]))
    return out


@functools.lru_cache(maxsize=4)
def wide_lexicon(wordnet_dir: str = WORDNET_DIR, vocabulary_size: int = 20_000) -> WideLexicon:
    """Pools of the ``vocabulary_size`` most frequent English words (``wordfreq``) that WordNet files
    in a pool by their most frequent sense, where that part of speech is the word's most common
    in WordNet (most senses). Left out: proper nouns (written capitalised in that sense), the
    most frequent words (function words: determiners, pronouns), participial adjectives, and
    irregular verbs absent from the grammar's lexicon (their past tense is not recorded
    unambiguously in ``verb.exc``)."""
    from multiattn.extras import require

    wordfreq = require("wordfreq", "the open-vocabulary speech corpus (a word frequency list)")
    folder = _require_wordnet(wordnet_dir)
    frequent = [
        w
        for w in wordfreq.top_n_list("en", vocabulary_size)[_FUNCTION_WORDS:]
        if w.isascii() and w.isalpha() and len(w) >= 3 and w not in _BLOCKED
    ]
    senses = {pos: _first_senses(folder, pos) for pos in _POS_FILES}
    synsets = {pos: _synsets(folder, pos) for pos in ("n", "v", "a")}
    noun_plurals = _exceptions(folder, "n")
    irregular_verbs = _exceptions(folder, "v")
    known_pasts = {row.base: row.past for row in SentenceGrammar(seed=0).transitive} | {
        row.base: row.past for row in SentenceGrammar(seed=0).intransitive
    }
    pools = WideLexicon()
    for word in frequent:
        counts = {pos: senses[pos][word][0] for pos in _POS_FILES if word in senses[pos]}
        if not counts:
            continue
        pos = max(counts, key=lambda p: (counts[p], "nvar".index(p) * -1))
        if pos == "n":
            lexfile, _, written = synsets["n"].get(senses["n"][word][1], (-1, set(), set()))
            if word not in written or (word.endswith("s") and word[:-1] in senses["n"]):
                continue  # a proper noun ("Leon", "Zurich") or a plural ("bones", "polls")
            noun = _Noun(word, noun_plurals.get(word, _plural(word)))
            for pool, files in _NOUN_FILES.items():
                if lexfile in files:
                    getattr(pools, pool).append(noun)
        elif pos == "v":
            _, frames, _ = synsets["v"].get(senses["v"][word][1], (-1, set(), set()))
            if word in irregular_verbs and word not in known_pasts:
                continue
            past = known_pasts.get(word) or _regular_past(word)
            verb = _Verb(word, _third_person(word), past, _ing(word, past))
            if frames & _TRANSITIVE_FRAMES:
                pools.transitive.append(verb)
            elif frames & _INTRANSITIVE_FRAMES:
                pools.intransitive.append(verb)
        elif pos == "a" and synsets["a"].get(senses["a"][word][1], (-1,))[0] != _PARTICIPLE_FILE:
            pools.adjectives.append(word)
        elif pos == "r" and word.endswith("ly"):
            pools.manner.append(word)
    return pools


class WideGrammar(SentenceGrammar):
    """:class:`SentenceGrammar` whose word pools also hold the words of a :class:`WideLexicon`.

    Args:
        pools: the added words (:func:`wide_lexicon`).
        seed: seed of the private random generator.
    """

    def __init__(self, pools: WideLexicon, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        for name in ("people", "animals", "things", "foods", "places", "transitive", "intransitive"):
            own = getattr(self, name)
            known = set(own)
            own.extend(item for item in getattr(pools, name) if item not in known)
        self.adjectives = sorted(set(self.adjectives) | set(pools.adjectives))
        self.manner = sorted(set(self.manner) | set(pools.manner))


def _grammar_sentences(pools: WideLexicon, count: int, seed: int) -> list[str]:
    grammar = WideGrammar(pools, seed=seed)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < count and attempts < 20 * count + 100:
        attempts += 1
        sentence = normalize_text(grammar.sentence())
        if sentence not in seen and MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            seen.add(sentence)
            out.append(sentence)
    return out


def open_vocabulary_texts(
    eval_sizes: dict[str, int],
    *,
    heldout_size: int,
    grammar_sentences: int,
    seed: int = 0,
    wordnet_dir: str | Path = WORDNET_DIR,
    fortunes_dir: str | Path = FORTUNES_DIR,
    vocabulary_size: int = 20_000,
    max_examples: int | None = None,
) -> dict[str, list[str]]:
    """Sentences per split, and the training text, dealt so that no evaluation sentence is trained on.

    The pool (WordNet examples, at most ``max_examples`` of them, and ``grammar_sentences`` wide
    grammar sentences) is de-duplicated and shuffled with ``seed``; each split of ``eval_sizes``
    (validation and the test splits of the training domain) takes its sentences from the front,
    and ``"train"`` is the rest, less any sentence of the held-out domain.
    ``"test_heldout_text"`` holds ``heldout_size`` sentences of the held-out domain (or all of them,
    when it has fewer).

    Returns:
        ``{"train": [...], **{split: [...] for split in eval_sizes}, "test_heldout_text": [...]}``.
    """
    examples = wordnet_examples(wordnet_dir)
    if max_examples is not None:
        examples = examples[:max_examples]
    pools = wide_lexicon(str(wordnet_dir), vocabulary_size)
    pool = _unique([*examples, *_grammar_sentences(pools, grammar_sentences, seed)])
    rng = random.Random(seed)
    rng.shuffle(pool)
    heldout = fortune_sentences(fortunes_dir)
    random.Random(seed + 1).shuffle(heldout)
    heldout = heldout[:heldout_size]
    out: dict[str, list[str]] = {}
    cursor = 0
    for split, size in eval_sizes.items():
        out[split] = pool[cursor : cursor + size]
        cursor += size
    if cursor >= len(pool):
        raise ValueError(
            f"the text pool has {len(pool)} sentences, fewer than the {cursor} evaluation ones asked"
        )
    excluded = set(heldout)
    out["train"] = [sentence for sentence in pool[cursor:] if sentence not in excluded]
    out["test_heldout_text"] = heldout
    return out
