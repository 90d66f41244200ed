"""Tokenizer and vocabulary."""

from __future__ import annotations

import pytest

from multiattn.tasks.captioning.vocab import SPECIALS, Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Dog, running!  On the beach.") == ["a", "dog", "running", "on", "the", "beach"]


def test_build_min_count_and_round_trip():
    vocab = Vocabulary.build(["a red circle", "a blue circle", "a rare word"], min_count=2)
    assert vocab.words[:4] == list(SPECIALS)
    assert "circle" in vocab and "a" in vocab and "rare" not in vocab
    ids = vocab.encode("A red circle.")
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    assert vocab.decode(ids) == "a <unk> circle"
    assert vocab.decode(vocab.encode("a circle")) == "a circle"
    assert vocab.decode([vocab.bos_id, vocab.index["a"], vocab.eos_id, vocab.index["circle"]]) == "a"
    assert Vocabulary(vocab.to_list()).words == vocab.words


def test_bad_vocabulary_lists_are_refused():
    with pytest.raises(ValueError, match="specials"):
        Vocabulary(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary([*SPECIALS, "a", "a"])
