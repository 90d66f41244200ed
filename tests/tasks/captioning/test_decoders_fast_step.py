"""The Show-Attend-Tell decoder's folded decoding step equals the plain ``_advance`` (nn.LSTMCell).

Covers the three foldings (token table with composed output layers, table only, no table), the
gating scalar on and off, the cache being rebuilt after an optimizer step or ``load_state_dict``
(stale folded weights would decode with the old parameters), training untouched, and whole beam
searches giving the same captions as the plain step.
"""

from __future__ import annotations

import pytest
import torch

import multiattn.tasks.captioning.fused_step as fused_step
from multiattn.attention.spatial import SoftSpatialAttention
from multiattn.tasks.captioning.decoders import ShowAttendTellDecoder
from tests.tasks.captioning.test_caption_model import _model as tiny_caption_model

FEATURES, EMBED, HIDDEN, ATTN = 8, 16, 24, 12
# V (Dh + C) < E (Dh + C + V) composes the output layers: V < 16 * 32 / 16 = 32 at these sizes.
FOLDINGS = {"composed": (17, True, True), "table": (40, True, False), "no_table": (1100, False, False)}


def _decoder(
    vocab_size: int, *, gate: bool = True, seed: int = 0, query_word: bool = False
) -> ShowAttendTellDecoder:
    torch.manual_seed(seed)
    decoder = ShowAttendTellDecoder(
        vocab_size=vocab_size,
        feature_dim=FEATURES,
        embed_dim=EMBED,
        hidden_dim=HIDDEN,
        attn_dim=ATTN,
        dropout=0.3,  # must be off in eval: the folded step has no dropout
        gate=gate,
        query_word=query_word,
    )
    with torch.no_grad():  # non-zero biases everywhere, so a misplaced bias shows
        for name, param in decoder.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.5)
    return decoder.eval()


def _plain(decoder: ShowAttendTellDecoder, tokens: torch.Tensor, state: dict):
    """The reference: ``_advance`` (nn.LSTMCell, separate projections), as ``step`` returns it."""
    logits, state, weights = decoder._advance(tokens[:, -1], state)
    return torch.log_softmax(logits.float(), dim=-1), state, weights


def _assert_steps_match(decoder: ShowAttendTellDecoder, *, steps: int = 5, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, FEATURES, 4, 5, generator=g)
    with torch.no_grad():
        fast_state = decoder.init_state(features)
        plain_state = dict(fast_state)
        tokens = torch.randint(0, decoder.vocab_size, (3, 1), generator=g)
        for _ in range(steps):
            fast, fast_state, fast_weights = decoder.step(tokens, fast_state)
            plain, plain_state, plain_weights = _plain(decoder, tokens, plain_state)
            torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(fast_state["h"], plain_state["h"], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(fast_state["c"], plain_state["c"], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(fast_weights, plain_weights, rtol=1e-5, atol=1e-6)
            tokens = torch.cat([tokens, torch.randint(0, decoder.vocab_size, (3, 1), generator=g)], dim=1)
    assert fast_state["folded"] is decoder.folded_weights()  # the folded path really ran


@pytest.mark.parametrize("folding", sorted(FOLDINGS))
@pytest.mark.parametrize("gate", [True, False])
def test_folded_step_matches_lstm_cell(folding: str, gate: bool) -> None:
    vocab_size, use_table, composed = FOLDINGS[folding]
    decoder = _decoder(vocab_size, gate=gate)
    folded = decoder.folded_weights()
    assert (folded.use_table, folded.composed) == (use_table, composed)
    _assert_steps_match(decoder)


@pytest.mark.parametrize("folding", sorted(FOLDINGS))
def test_folded_step_matches_with_the_word_in_the_query(folding: str) -> None:
    decoder = _decoder(FOLDINGS[folding][0], query_word=True, seed=2)
    assert decoder.word_query is not None
    _assert_steps_match(decoder)


@pytest.mark.parametrize("folding", sorted(FOLDINGS))
def test_cache_is_rebuilt_after_an_optimizer_step(folding: str) -> None:
    decoder = _decoder(FOLDINGS[folding][0])
    before = decoder.folded_weights()
    assert decoder.folded_weights() is before  # cached while the weights stay
    decoder.train()
    optimizer = torch.optim.SGD(decoder.parameters(), lr=0.5)
    features = torch.randn(2, FEATURES, 4, 5)
    tokens = torch.randint(1, decoder.vocab_size, (2, 4))
    logits, _ = decoder(features, tokens, torch.tensor([4, 4]))
    logits.logsumexp(-1).mean().backward()
    optimizer.step()
    decoder.eval()
    after = decoder.folded_weights()
    assert after is not before
    assert not torch.allclose(after.hidden_weight, before.hidden_weight)
    _assert_steps_match(decoder)  # stale folded weights would decode with the old parameters


def test_cache_is_rebuilt_after_load_state_dict() -> None:
    decoder = _decoder(17, seed=0)
    _assert_steps_match(decoder)
    decoder.load_state_dict(_decoder(17, seed=5).state_dict())
    _assert_steps_match(decoder)
    # a write through .data bypasses the version counter: clear_folded_weights is the way out
    with torch.no_grad():
        decoder.cell.weight_hh.data.mul_(1.5)
    decoder.clear_folded_weights()
    _assert_steps_match(decoder)


def test_training_and_grad_use_the_lstm_cell_path() -> None:
    decoder = _decoder(17)
    features = torch.randn(2, FEATURES, 4, 5)
    state = decoder.init_state(features)
    tokens = torch.full((2, 1), 3)
    log_probs, state, _ = decoder.step(tokens, state)  # autograd on: the plain path
    assert "folded" not in state and decoder._folded is None
    assert log_probs.requires_grad
    decoder.train()
    with torch.no_grad():
        decoder.step(tokens, decoder.init_state(features))
    assert decoder._folded is None


@pytest.mark.parametrize("beam_size", [1, 3])
def test_searches_give_the_plain_step_captions(monkeypatch: pytest.MonkeyPatch, beam_size: int) -> None:
    model = tiny_caption_model("show_attend_tell")
    images = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    fast = model.generate(images, beam_size=beam_size, max_len=8)
    assert model.decoder._folded is not None
    monkeypatch.setattr(
        ShowAttendTellDecoder, "step", lambda self, tokens, state: _plain(self, tokens, state)
    )
    plain = model.generate(images, beam_size=beam_size, max_len=8)
    assert [c.tokens for c in fast] == [c.tokens for c in plain]
    for a, b in zip(fast, plain):
        assert abs(a.score - b.score) < 1e-4
        torch.testing.assert_close(a.attention, b.attention, rtol=1e-4, atol=1e-5)


def test_the_vocabulary_rule_picks_the_matmul_for_large_vocabularies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_step, "TOKEN_TABLE_MAX_VOCAB", 16)
    decoder = _decoder(17)
    assert not decoder.folded_weights().use_table
    _assert_steps_match(decoder)


def test_spatial_attention_attends_from_precomputed_hidden_projections() -> None:
    torch.manual_seed(0)
    attention = SoftSpatialAttention(feature_dim=FEATURES, hidden_dim=HIDDEN, attn_dim=ATTN)
    features, hidden = torch.randn(2, FEATURES, 3, 4), torch.randn(6, HIDDEN)  # 3 hypotheses per grid
    plain = attention(features, hidden)
    given = attention.attend(features, attention.hidden_proj(hidden), attention.gate_proj(hidden))
    for a, b in zip(plain, given):
        torch.testing.assert_close(a, b)
    other = attention.attend(features, attention.hidden_proj(-hidden), attention.gate_proj(hidden))
    assert not torch.allclose(other.weights, plain.weights)  # the given projection is what is used
    with pytest.raises(ValueError, match="hidden_proj"):
        attention.attend(features, torch.zeros(6, ATTN + 1), attention.gate_proj(hidden))
    with pytest.raises(ValueError, match="gate_logit"):
        attention.attend(features, attention.hidden_proj(hidden), None)
    ungated = SoftSpatialAttention(feature_dim=FEATURES, hidden_dim=HIDDEN, attn_dim=ATTN, gate=False)
    with pytest.raises(ValueError, match="gate_logit"):
        ungated.attend(features, ungated.hidden_proj(hidden), torch.zeros(6, 1))
