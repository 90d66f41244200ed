"""CharTokenizer: round trip, specials, plain-list vocabulary."""

from __future__ import annotations

import pytest
import torch

from multiattn.tasks.asr.tokenizer import CharTokenizer


def test_round_trip_and_specials() -> None:
    tok = CharTokenizer()
    text = "the cat's hat"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert min(ids) >= 3 and tok.blank_id == tok.pad_id == 0 and tok.bos_id == tok.eos_id == 1
    assert len(tok) == 3 + 26 + 2


def test_unknown_characters_and_decode_drops_specials() -> None:
    tok = CharTokenizer()
    ids = tok.encode("a1b")
    assert ids[1] == tok.unk_id
    assert tok.decode([tok.bos_id, *tok.encode(" hi  there "), tok.blank_id, tok.eos_id]) == "hi there"


def test_vocab_is_a_plain_list_that_rebuilds() -> None:
    tok = CharTokenizer()
    assert isinstance(tok.vocab, list) and all(isinstance(c, str) for c in tok.vocab)
    again = CharTokenizer(list(tok.vocab))
    assert again.encode("hello world") == tok.encode("hello world")
    with pytest.raises(ValueError, match="specials"):
        CharTokenizer(["a", "b"])


def test_batch_encode_pads_with_pad_id() -> None:
    tok = CharTokenizer()
    targets, lengths = tok.batch_encode(["ab", "abcd"])
    assert targets.shape == (2, 4)
    assert lengths.tolist() == [2, 4]
    assert torch.all(targets[0, 2:] == tok.pad_id)
