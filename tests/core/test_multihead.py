"""MultiHeadAttention: fast path == explicit (recording) path == torch.nn.MultiheadAttention."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from multiattn.attention import ATTENTION, KVCache, LinearAttention, MultiHeadAttention, build_attention
from multiattn.masks import lengths_to_mask
from multiattn.recording import record_attention

EMBED_DIM, NUM_HEADS = 16, 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _pair(context_dim: int | None = None) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    ours = MultiHeadAttention(EMBED_DIM, NUM_HEADS, context_dim=context_dim).eval()
    kdim = context_dim or EMBED_DIM
    reference = nn.MultiheadAttention(EMBED_DIM, NUM_HEADS, batch_first=True, kdim=kdim, vdim=kdim).eval()
    with torch.no_grad():  # non-trivial biases, so a bias mix-up is caught
        for param in reference.parameters():
            param.normal_(0, 0.3)
    ours.load_torch_weights(reference)
    return ours, reference


# Causal cross-attention (S != T) is left out: nn.MultiheadAttention has no bottom-right alignment.
@pytest.mark.parametrize(
    "cross, padded, causal",
    [
        (False, False, False),
        (False, True, False),
        (False, False, True),
        (False, True, True),
        (True, False, False),
        (True, True, False),
    ],
)
def test_parity_fast_explicit_torch(cross: bool, padded: bool, causal: bool) -> None:
    context_dim = 12 if cross else None
    ours, reference = _pair(context_dim)
    x = torch.randn(3, 6, EMBED_DIM)
    context = torch.randn(3, 9, context_dim) if cross else None
    keys = context if cross else x
    key_len = keys.shape[1]
    mask = lengths_to_mask(torch.tensor([key_len, 4, 2]), key_len) if padded else None
    fast = ours(x, context, mask=mask, is_causal=causal)
    with record_attention(ours) as rec:
        explicit = ours(x, context, mask=mask, is_causal=causal)
    torch_mask = torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None
    expected, expected_weights = reference(
        x,
        keys,
        keys,
        key_padding_mask=None if mask is None else ~mask,
        attn_mask=torch_mask,
        average_attn_weights=False,
    )
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-4)
    (recorded,) = rec[""]
    assert recorded.axes == ("batch", "head", "query", "key")
    torch.testing.assert_close(recorded.weights, expected_weights, atol=1e-5, rtol=1e-4)


def test_masked_keys_get_zero_weight_and_rows_sum_to_one() -> None:
    attention = MultiHeadAttention(EMBED_DIM, NUM_HEADS).eval()
    x = torch.randn(2, 5, EMBED_DIM)
    mask = lengths_to_mask(torch.tensor([3, 5]), 5)
    with record_attention() as rec:
        attention(x, mask=mask)
    weights = rec["MultiHeadAttention"][0].weights  # (B, nh, T, S)
    assert torch.all(weights[0, :, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, NUM_HEADS, 5))


@pytest.mark.parametrize("recording", [False, True])
def test_all_masked_rows_are_finite_and_zero(recording: bool) -> None:
    attention = MultiHeadAttention(EMBED_DIM, NUM_HEADS, bias=False).eval()
    x = torch.randn(2, 4, EMBED_DIM)
    context = torch.randn(2, 3, EMBED_DIM)
    mask = torch.ones(2, 3, dtype=torch.bool)
    mask[1] = False  # item 1 has no valid key at all
    full = torch.ones(2, 4, 3, dtype=torch.bool)
    full[0, 2] = False  # one query row of item 0 sees nothing
    for m in (mask, full):
        with record_attention() if recording else contextlib.nullcontext() as rec:
            out = attention(x, context, mask=m)
        assert torch.isfinite(out).all()
        empty = ~m.any(-1) if m.dim() == 3 else (~m.any(-1))[:, None].expand(2, 4)  # (B, T)
        assert torch.all(out[empty] == 0)  # bias=False: zero attended value -> zero output
        if recording:
            weights = rec["MultiHeadAttention"][0].weights
            assert torch.all(weights.permute(0, 2, 1, 3)[empty] == 0)


def test_padding_invariance() -> None:
    attention = MultiHeadAttention(EMBED_DIM, NUM_HEADS).eval()
    x = torch.randn(2, 7, EMBED_DIM)
    mask = lengths_to_mask(torch.tensor([4, 7]), 7)
    batched = attention(x, mask=mask)
    alone = attention(x[:1, :4])
    torch.testing.assert_close(batched[:1, :4], alone, atol=1e-5, rtol=1e-5)


def test_recording_off_emits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiattn.attention.multihead as multihead

    calls = []
    monkeypatch.setattr(multihead, "emit", lambda *args, **kwargs: calls.append(args))
    attention = MultiHeadAttention(EMBED_DIM, NUM_HEADS).eval()
    attention(torch.randn(2, 3, EMBED_DIM), is_causal=True)
    assert calls == []
    with record_attention():
        attention(torch.randn(2, 3, EMBED_DIM), is_causal=True)
    assert len(calls) == 1


def test_every_parameter_gets_a_gradient_and_bf16_has_no_nan() -> None:
    attention = MultiHeadAttention(EMBED_DIM, NUM_HEADS, context_dim=8, dropout=0.1).train()
    x, context = torch.randn(2, 5, EMBED_DIM), torch.randn(2, 6, 8)
    mask = lengths_to_mask(torch.tensor([6, 0]), 6)  # item 1: nothing to attend to
    attention(x, context, mask=mask).sum().backward()
    for name, param in attention.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
        assert torch.isfinite(param.grad).all(), name
    for recording in (False, True):
        with (
            torch.autocast("cpu", dtype=torch.bfloat16),
            record_attention() if recording else contextlib.nullcontext(),
        ):
            out = attention(x, context, mask=mask)
            out.float().sum().backward()
        assert torch.isfinite(out).all()
        assert all(torch.isfinite(p.grad).all() for p in attention.parameters())


def test_cached_self_and_cross_attention_equal_full() -> None:
    self_attn = MultiHeadAttention(EMBED_DIM, NUM_HEADS).eval()
    cross_attn = MultiHeadAttention(EMBED_DIM, NUM_HEADS, context_dim=8).eval()
    x, memory = torch.randn(2, 5, EMBED_DIM), torch.randn(2, 6, 8)
    memory_mask = lengths_to_mask(torch.tensor([6, 3]), 6)
    full = cross_attn(self_attn(x, is_causal=True), memory, mask=memory_mask)
    self_cache, cross_cache = self_attn.make_cache(), cross_attn.make_cache(static=True)
    steps = []
    for t in range(5):
        h = self_attn(x[:, t : t + 1], is_causal=True, cache=self_cache)
        steps.append(cross_attn(h, memory if t == 0 else None, mask=memory_mask, cache=cross_cache))
    assert self_cache.length == 5 and cross_cache.length == 6
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_cache_reorder_selects_batch_rows() -> None:
    cache = KVCache()
    key = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 2, 4, 5)
    cache.append(key, key + 10)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.key[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    assert cache.value[:, 0, 0, 0].tolist() == [12.0, 12.0, 10.0]


def test_buffered_cache_equals_concatenation_through_growth_and_reorders() -> None:
    """Appends past the capacity, reorders that expand and shrink the rows, then more appends."""
    torch.manual_seed(0)
    cache, keys, values = KVCache(), None, None
    rows = 2
    plan = (
        [None] * 3 + [torch.tensor([1, 1, 0, 1, 0, 0])] + [None] * 15 + [torch.tensor([5, 2])] + [None] * 20
    )
    for indices in plan:
        if indices is not None:
            cache.reorder(indices)
            keys, values = keys.index_select(0, indices), values.index_select(0, indices)
            rows = indices.numel()
            continue
        key, value = torch.randn(rows, 2, 1, 3), torch.randn(rows, 2, 1, 4)
        with torch.no_grad():
            got_key, got_value = cache.append(key, value)
        keys = key if keys is None else torch.cat([keys, key], 2)
        values = value if values is None else torch.cat([values, value], 2)
        assert torch.equal(got_key, keys) and torch.equal(got_value, values)
    assert cache.length == keys.shape[2] == 38 and cache.key.shape[0] == 2


def test_buffered_cache_allocates_nothing_between_growths() -> None:
    cache = KVCache()
    with torch.no_grad():
        cache.append(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4))
        cache.reorder(torch.tensor([0, 0, 2]))  # allocates the spare pair once
        pointers = {cache.key.data_ptr()}
        for _ in range(10):  # within the first capacity (16 positions)
            cache.append(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4))
            cache.reorder(torch.tensor([2, 1, 1]))
            pointers.add(cache.key.data_ptr())
    assert len(pointers) == 2  # the two buffers, swapped at every reorder


def test_cache_under_autograd_keeps_plain_tensors_and_gradients() -> None:
    cache = KVCache()
    key = torch.randn(2, 1, 1, 3, requires_grad=True)
    cache.append(key, key * 2)
    cache.append(key * 3, key * 4)
    cache.reorder(torch.tensor([1, 0]))
    (cache.key.sum() + cache.value.sum()).backward()
    torch.testing.assert_close(key.grad, torch.full_like(key, 10.0))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(torch.randn(2, 3, 15)), r"x: expected shape \(\*, \*, 16\), received \(2, 3, 15\)"),
        (lambda m: m(torch.randn(2, 3)), r"received \(2, 3\)"),
        (lambda m: m(torch.randn(2, 3, 16), torch.randn(3, 4, 16)), r"context: expected shape \(2, \*, 16\)"),
        (
            lambda m: m(torch.randn(2, 3, 16), mask=torch.ones(2, 4, dtype=torch.bool)),
            r"expected shape \(2, 3\)",
        ),
        (lambda m: m(torch.randn(2, 3, 16), mask=torch.ones(2, 3)), "torch.bool"),
        (lambda m: m(torch.randn(2, 3, 16), mask=torch.ones(2, 3, 4, dtype=torch.bool)), r"\(2, 3, 3\)"),
    ],
)
@pytest.mark.parametrize("cls", [MultiHeadAttention, LinearAttention])
def test_bad_input_raises_value_error(cls, call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(cls(EMBED_DIM, NUM_HEADS))


def test_registry() -> None:
    assert set(ATTENTION) == {"softmax", "linear"}
    assert isinstance(build_attention("linear", embed_dim=8, num_heads=2), LinearAttention)
    with pytest.raises(ValueError, match="linear, softmax"):
        build_attention("sparse", embed_dim=8, num_heads=2)


@pytest.mark.parametrize("recording", [False, True])
def test_grouped_queries_equal_repeated_keys(recording: bool) -> None:
    """A static cache of G rows serves G * K query rows: row b reads key row b // K."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, context_dim=12).eval()
    memory, mask = torch.randn(2, 7, 12), torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    queries = torch.randn(6, 2, 16)  # (G * K, T, D), K = 3
    shared, repeated = attn.make_cache(static=True), attn.make_cache(static=True)
    with torch.no_grad():
        attn(queries[:2], memory, mask=mask, cache=shared)  # fills the cache with G = 2 rows
        attn(queries, memory.repeat_interleave(3, 0), mask=mask.repeat_interleave(3, 0), cache=repeated)
        with record_attention(attn) if recording else contextlib.nullcontext() as recorder:
            got = attn(queries, mask=mask, cache=shared)
        expected = attn(queries, mask=mask.repeat_interleave(3, 0), cache=repeated)
    torch.testing.assert_close(got, expected)
    if recording:
        (record,) = recorder.maps[next(iter(recorder.maps))]
        assert record.weights.shape == (6, 4, 2, 7)
        assert float(record.weights[3:, :, :, 4:].abs().max()) == 0.0  # item 1's padding
    with pytest.raises(ValueError, match="divisor"):
        attn(queries[:5], mask=mask, cache=shared)
