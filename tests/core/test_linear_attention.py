"""LinearAttention (Katharopoulos et al. 2020): fast sums == explicit kernel formula, masks, caching."""

from __future__ import annotations

import contextlib

import pytest
import torch

from multiattn.attention import KVCache, LinearAttention, LinearAttentionState
from multiattn.attention.linear import elu_feature_map
from multiattn.masks import lengths_to_mask
from multiattn.recording import record_attention
from tests.helpers.gradients import assert_every_parameter_learns

EMBED_DIM, NUM_HEADS = 16, 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _reference(attention: LinearAttention, x, context=None, mask=None, causal=False):
    """The kernel formula written out directly, one query and one key at a time."""
    source = x if context is None else context
    heads, head_dim = attention.num_heads, attention.head_dim
    q = elu_feature_map(attention.q_proj(x)).view(*x.shape[:2], heads, head_dim)
    k = elu_feature_map(attention.k_proj(source)).view(*source.shape[:2], heads, head_dim)
    v = attention.v_proj(source).view(*source.shape[:2], heads, head_dim)
    out = torch.zeros_like(q)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            for h in range(heads):
                numerator, denominator = torch.zeros(head_dim), torch.zeros(())
                for s in range(source.shape[1]):
                    if (mask is not None and not mask[b, s]) or (causal and s > t):
                        continue
                    similarity = q[b, t, h] @ k[b, s, h]
                    numerator = numerator + similarity * v[b, s, h]
                    denominator = denominator + similarity
                out[b, t, h] = numerator / denominator if denominator > 0 else 0.0
    return attention.out_proj(out.reshape(*x.shape[:2], -1))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("chunk_size", [2, 64])
def test_fast_and_explicit_equal_reference_formula(causal: bool, padded: bool, chunk_size: int) -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS, chunk_size=chunk_size).eval()
    x = torch.randn(2, 7, EMBED_DIM)
    mask = lengths_to_mask(torch.tensor([7, 4]), 7) if padded else None
    expected = _reference(attention, x, mask=mask, causal=causal)
    fast = attention(x, mask=mask, is_causal=causal)
    with record_attention(attention) as rec:
        explicit = attention(x, mask=mask, is_causal=causal)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-4)
    weights = rec[""][0].weights  # (B, nh, T, S)
    assert weights.shape == (2, NUM_HEADS, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, NUM_HEADS, 7))
    if padded:
        assert torch.all(weights[1, :, :, 4:] == 0)
    if causal:
        assert torch.all(weights.triu(1) == 0)


def test_cross_attention_matches_reference_and_empty_rows_are_zero() -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS, context_dim=8, bias=False).eval()
    x, context = torch.randn(3, 4, EMBED_DIM), torch.randn(3, 5, 8)
    mask = lengths_to_mask(torch.tensor([5, 2, 0]), 5)
    expected = _reference(attention, x, context, mask=mask)
    for recording in (False, True):
        with record_attention() if recording else contextlib.nullcontext():
            out = attention(x, context, mask=mask)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
        assert torch.all(out[2] == 0)  # no valid key and no bias: exactly zero


def test_full_mask_takes_the_explicit_form() -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS).eval()
    x = torch.randn(2, 5, EMBED_DIM)
    full = torch.ones(5, 5, dtype=torch.bool).tril().expand(2, 5, 5)
    torch.testing.assert_close(attention(x, mask=full), attention(x, is_causal=True), atol=1e-5, rtol=1e-4)


def test_padding_invariance() -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS, chunk_size=3).eval()
    x = torch.randn(2, 9, EMBED_DIM)
    mask = lengths_to_mask(torch.tensor([9, 5]), 9)
    for causal in (False, True):
        batched = attention(x, mask=mask, is_causal=causal)
        alone = attention(x[1:, :5], is_causal=causal)
        torch.testing.assert_close(batched[1:, :5], alone, atol=1e-5, rtol=1e-4)


def test_recording_off_emits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiattn.attention.linear as linear

    calls = []
    monkeypatch.setattr(linear, "emit", lambda *args, **kwargs: calls.append(args))
    attention = LinearAttention(EMBED_DIM, NUM_HEADS).eval()
    x = torch.randn(2, 6, EMBED_DIM)
    attention(x, is_causal=True)
    attention(x)
    assert calls == []
    with record_attention():
        attention(x, is_causal=True)
    assert len(calls) == 1


@pytest.mark.parametrize("recording", [False, True])
def test_cached_decoding_equals_full(recording: bool) -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS, chunk_size=2).eval()
    x = torch.randn(3, 6, EMBED_DIM)
    full = attention(x, is_causal=True)
    state = attention.make_cache()
    assert isinstance(state, LinearAttentionState)
    with record_attention() if recording else contextlib.nullcontext() as rec:
        first = attention(x[:, :3], is_causal=True, cache=state)  # a 3-step prefix, then single steps
        steps = [attention(x[:, t : t + 1], is_causal=True, cache=state) for t in range(3, 6)]
    assert state.length == 6
    torch.testing.assert_close(torch.cat([first, *steps], 1), full, atol=1e-5, rtol=1e-4)
    if recording:
        assert [m.weights.shape[-1] for m in rec["LinearAttention"]] == [3, 4, 5, 6]


def test_state_reorder_and_recording_midway_fails() -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS).eval()
    x = torch.randn(3, 4, EMBED_DIM)
    state = attention.make_cache()
    attention(x[:, :3], is_causal=True, cache=state)
    reordered = LinearAttentionState(kv=state.kv.clone(), k_sum=state.k_sum.clone(), length=state.length)
    reordered.reorder(torch.tensor([2, 0]))
    step = attention(x[[2, 0], 3:], is_causal=True, cache=reordered)
    torch.testing.assert_close(step, attention(x[[2, 0]], is_causal=True)[:, 3:], atol=1e-5, rtol=1e-4)
    with record_attention(), pytest.raises(ValueError, match="folded before recording started"):
        attention(x[:, 3:], is_causal=True, cache=state)


def test_static_cross_cache() -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS, context_dim=8).eval()
    x, memory = torch.randn(2, 3, EMBED_DIM), torch.randn(2, 5, 8)
    mask = lengths_to_mask(torch.tensor([5, 3]), 5)
    cache = attention.make_cache(static=True)
    assert isinstance(cache, KVCache)
    steps = [attention(x[:, t : t + 1], memory if t == 0 else None, mask=mask, cache=cache) for t in range(3)]
    torch.testing.assert_close(torch.cat(steps, 1), attention(x, memory, mask=mask), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="LinearAttentionState"):
        attention(x, cache=KVCache())


def test_gradients_and_bf16() -> None:
    attention = LinearAttention(EMBED_DIM, NUM_HEADS, dropout=0.1, chunk_size=4).train()
    x = torch.randn(2, 10, EMBED_DIM)
    mask = lengths_to_mask(torch.tensor([10, 6]), 10)
    assert_every_parameter_learns(attention(x, mask=mask, is_causal=True).sum(), attention)
    for causal in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attention(x, mask=mask, is_causal=causal)
            out.float().sum().backward()
        assert torch.isfinite(out).all()
        assert all(torch.isfinite(p.grad).all() for p in attention.parameters())
