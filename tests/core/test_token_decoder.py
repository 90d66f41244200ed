"""Parity: the core's token decoder gives what captioning's and speech's own Transformer decoders gave.

``_OldCaptionDecoder`` and ``_OldSpeechDecoder`` are the two task decoders as they were before
both became :class:`multiattn.token_decoder.TokenDecoder`; with copied weights the shared decoder
must give the same logits, alignments and cached steps.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from multiattn.attention.spatial import flatten_grid
from multiattn.masks import lengths_to_mask
from multiattn.positional import SinusoidalPositionalEncoding, sinusoidal_2d
from multiattn.recording import record_attention
from multiattn.tasks.asr.decoders import TransformerAttentionDecoder
from multiattn.tasks.captioning.decoders import TransformerCaptionDecoder
from multiattn.token_decoder import TokenDecoder
from multiattn.transformer import TransformerDecoder

VOCAB, DIM, HEADS, LAYERS, FF = 13, 16, 2, 2, 24


class _OldCaptionDecoder(nn.Module):
    """The captioning decoder before it used the core's token decoder (verbatim, trimmed)."""

    def __init__(
        self, *, vocab_size, feature_dim, embed_dim, num_heads, num_layers, ff_dim, dropout, max_len
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.attention_layer = -1 % num_layers
        self.memory_proj = nn.Linear(feature_dim, embed_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.positions = SinusoidalPositionalEncoding(embed_dim, max_len, dropout=dropout)
        self.decoder = TransformerDecoder(
            embed_dim=embed_dim, num_heads=num_heads, num_layers=num_layers, ff_dim=ff_dim, dropout=dropout
        )
        self.out = nn.Linear(embed_dim, vocab_size)

    def memory(self, features):
        flat, (height, width) = flatten_grid(features)
        positions = sinusoidal_2d(height, width, self.embed_dim).to(device=flat.device, dtype=flat.dtype)
        return self.memory_proj(flat) + positions, (height, width)

    def _embed(self, tokens, offset=0):
        return self.positions(self.embedding(tokens) * math.sqrt(self.embed_dim), offset=offset)

    def _cross_attention(self, recorder, grid):
        weights = recorder[f"layers.{self.attention_layer}.cross_attn"][-1].weights
        batch, _, steps, _ = weights.shape
        return weights.float().mean(dim=1).view(batch, steps, *grid)

    def forward(self, features, tokens, lengths):
        memory, grid = self.memory(features)
        with record_attention(self.decoder) as recorder:
            hidden = self.decoder(self._embed(tokens), memory, tgt_lengths=lengths)
        return self.out(hidden), self._cross_attention(recorder, grid)

    def init_state(self, features):
        memory, grid = self.memory(features)
        return {"cache": self.decoder.init_cache(memory), "grid": grid}

    def step(self, tokens, state):
        cache = state["cache"]
        x = self._embed(tokens[:, -1:], offset=cache.length)
        with record_attention(self.decoder) as recorder:
            hidden = self.decoder(x, cache=cache)
        log_probs = torch.log_softmax(self.out(hidden[:, 0]).float(), dim=-1)
        return log_probs, state, self._cross_attention(recorder, state["grid"])[:, 0]


class _OldSpeechDecoder(nn.Module):
    """The speech decoder before it used the core's token decoder (verbatim, trimmed)."""

    def __init__(self, *, vocab_size, embed_dim, num_heads, num_layers, ff_dim, dropout, max_len=1024):
        super().__init__()
        self.embed_dim = embed_dim
        self.alignment_layer = -1 % num_layers
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.positions = SinusoidalPositionalEncoding(embed_dim, max_len, dropout=dropout)
        self.decoder = TransformerDecoder(
            embed_dim=embed_dim, num_heads=num_heads, num_layers=num_layers, ff_dim=ff_dim, dropout=dropout
        )
        self.out = nn.Linear(embed_dim, vocab_size)

    def _embed(self, tokens, offset=0):
        return self.positions(self.embed(tokens) * math.sqrt(self.embed_dim), offset=offset)

    def forward(self, tokens_in, memory, memory_lengths, *, tgt_lengths=None):
        memory_mask = lengths_to_mask(memory_lengths, memory.shape[1])
        h = self.decoder(self._embed(tokens_in), memory, memory_mask=memory_mask, tgt_lengths=tgt_lengths)
        return self.out(h)

    def alignment(self, recorder):
        maps = recorder[f"decoder.layers.{self.alignment_layer}.cross_attn"]
        return torch.cat([m.weights.float().mean(dim=1) for m in maps], dim=1)

    def init_state(self, memory, memory_lengths):
        return self.decoder.init_cache(memory, lengths_to_mask(memory_lengths, memory.shape[1]))

    def step(self, tokens, state):
        x = self._embed(tokens[:, -1:], offset=state.length)
        with record_attention(self) as rec:
            h = self.decoder(x, cache=state)
        attention = self.alignment(rec)[:, 0]
        return self.out(h[:, 0]).float().log_softmax(dim=-1), state, attention


def _copy_weights(old: nn.Module, new: nn.Module) -> None:
    state = {key.replace("embed.", "embedding."): value for key, value in old.state_dict().items()}
    new.load_state_dict(state)


def _tokens(batch: int, steps: int, seed: int) -> torch.Tensor:
    tokens = torch.randint(3, VOCAB, (batch, steps), generator=torch.Generator().manual_seed(seed))
    tokens[:, 0] = 1
    return tokens


@pytest.mark.parametrize("seed", [0, 1])
def test_caption_decoder_matches_the_old_one(seed, one_thread):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, embed_dim=DIM, num_heads=HEADS, num_layers=LAYERS, ff_dim=FF, dropout=0.0)
    old = _OldCaptionDecoder(feature_dim=6, max_len=16, **common).eval()
    new = TransformerCaptionDecoder(feature_dim=6, max_len=16, **common).eval()
    _copy_weights(old, new)
    features = torch.randn(2, 6, 3, 4, generator=torch.Generator().manual_seed(seed))
    tokens, lengths = _tokens(2, 5, seed), torch.tensor([5, 3])
    old_logits, old_attention = old(features, tokens, lengths)
    new_logits, new_attention = new(features, tokens, lengths, with_attention=True)
    torch.testing.assert_close(new_logits, old_logits)
    torch.testing.assert_close(new_attention, old_attention)
    plain_logits, none = new(features, tokens, lengths, with_attention=False)
    torch.testing.assert_close(plain_logits, old_logits, atol=1e-5, rtol=1e-5)
    assert none is None
    with torch.no_grad():
        old_state, new_state = old.init_state(features), new.init_state(features)
        for t in range(tokens.shape[1]):
            old_lp, old_state, old_att = old.step(tokens[:, : t + 1], old_state)
            new_lp, new_state, new_att = new.step(tokens[:, : t + 1], new_state)
            torch.testing.assert_close(new_lp, old_lp)
            torch.testing.assert_close(new_att, old_att)


@pytest.mark.parametrize("seed", [0, 1])
def test_speech_decoder_matches_the_old_one(seed, one_thread):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, embed_dim=DIM, num_heads=HEADS, num_layers=LAYERS, ff_dim=FF, dropout=0.0)
    old = _OldSpeechDecoder(**common).eval()
    new = TransformerAttentionDecoder(**common).eval()
    _copy_weights(old, new)
    memory = torch.randn(3, 7, DIM, generator=torch.Generator().manual_seed(seed))
    memory_lengths, tokens, lengths = torch.tensor([7, 4, 6]), _tokens(3, 5, seed), torch.tensor([5, 2, 4])
    torch.testing.assert_close(
        new(tokens, memory, memory_lengths, tgt_lengths=lengths),
        old(tokens, memory, memory_lengths, tgt_lengths=lengths),
    )
    with torch.no_grad():
        old_state, new_state = old.init_state(memory, memory_lengths), new.init_state(memory, memory_lengths)
        for t in range(tokens.shape[1]):
            old_lp, old_state, old_att = old.step(tokens[:, : t + 1], old_state)
            new_lp, new_state, new_att = new.step(tokens[:, : t + 1], new_state, return_attention=True)
            torch.testing.assert_close(new_lp, old_lp)
            torch.testing.assert_close(new_att, old_att)
            assert new_att.shape == (3, 7)


def test_both_task_decoders_are_the_core_token_decoder():
    assert issubclass(TransformerCaptionDecoder, TokenDecoder)
    assert issubclass(TransformerAttentionDecoder, TokenDecoder)
