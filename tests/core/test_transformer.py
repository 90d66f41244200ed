"""Pre-norm Transformer encoder / decoder: padding invariance, cached decoding, recording, gradients."""

from __future__ import annotations

import pytest
import torch

from multiattn.masks import lengths_to_mask
from multiattn.recording import record_attention
from multiattn.transformer import TransformerDecoder, TransformerEncoder
from tests.helpers.gradients import assert_every_parameter_learns

EMBED_DIM, NUM_HEADS = 16, 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _encoder(attention: str) -> TransformerEncoder:
    return TransformerEncoder(
        embed_dim=EMBED_DIM, num_heads=NUM_HEADS, num_layers=2, ff_dim=32, dropout=0.1, attention=attention
    )


def _decoder(attention: str, memory_dim: int = 12) -> TransformerDecoder:
    return TransformerDecoder(
        embed_dim=EMBED_DIM,
        num_heads=NUM_HEADS,
        num_layers=2,
        ff_dim=32,
        dropout=0.1,
        memory_dim=memory_dim,
        attention=attention,
    )


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_encoder_padding_invariance_and_zeroed_padding(attention: str) -> None:
    encoder = _encoder(attention).eval()
    x = torch.randn(2, 7, EMBED_DIM)
    x[1, 4:] = 100.0  # garbage in the padding must not leak into valid positions
    y, lengths = encoder(x, torch.tensor([7, 4]))
    alone, _ = encoder(x[1:, :4], torch.tensor([4]))
    torch.testing.assert_close(y[1:, :4], alone, atol=1e-5, rtol=1e-4)
    assert torch.all(y[1, 4:] == 0)
    assert lengths.tolist() == [7, 4]


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_incremental_decoding_equals_full_and_reorders(attention: str) -> None:
    decoder = _decoder(attention).eval()
    x, memory = torch.randn(3, 6, EMBED_DIM), torch.randn(3, 5, 12)
    memory_mask = lengths_to_mask(torch.tensor([5, 3, 1]), 5)
    full = decoder(x, memory, memory_mask=memory_mask)
    cache = decoder.init_cache(memory, memory_mask)
    steps = [decoder(x[:, :2], cache=cache)]  # a two-token prefix, then single steps
    steps += [decoder(x[:, t : t + 1], cache=cache) for t in range(2, 6)]
    assert cache.length == 6
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)

    # Beam-search style reorder: continue rows [2, 0, 0] from a 4-step cache.
    order = torch.tensor([2, 0, 0])
    cache = decoder.init_cache(memory, memory_mask)
    for t in range(4):
        decoder(x[:, t : t + 1], cache=cache)
    cache.reorder(order)
    step = decoder(x[order, 4:5], cache=cache)
    expected = decoder(x[order, :5], memory[order], memory_mask=memory_mask[order])[:, 4:5]
    torch.testing.assert_close(step, expected, atol=1e-5, rtol=1e-4)


def test_target_padding_does_not_change_valid_positions() -> None:
    decoder = _decoder("softmax").eval()
    x, memory = torch.randn(2, 5, EMBED_DIM), torch.randn(2, 4, 12)
    y = decoder(x, memory, tgt_lengths=torch.tensor([5, 3]))
    alone = decoder(x[1:, :3], memory[1:])
    torch.testing.assert_close(y[1:, :3], alone, atol=1e-5, rtol=1e-4)
    assert torch.all(y[1, 3:] == 0)


def test_decoder_recording_equals_fast_and_names_cross_attention() -> None:
    decoder = _decoder("softmax").eval()
    x, memory = torch.randn(2, 4, EMBED_DIM), torch.randn(2, 5, 12)
    memory_mask = lengths_to_mask(torch.tensor([5, 2]), 5)
    fast = decoder(x, memory, memory_mask=memory_mask)
    with record_attention(decoder) as rec:
        explicit = decoder(x, memory, memory_mask=memory_mask)
    torch.testing.assert_close(explicit, fast, atol=1e-5, rtol=1e-4)
    weights = rec["layers.1.cross_attn"][0].weights
    assert weights.shape == (2, NUM_HEADS, 4, 5)
    assert torch.all(weights[1, :, :, 2:] == 0)
    assert "layers.0.self_attn" in rec


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_gradients_reach_every_parameter_and_bf16_is_finite(attention: str) -> None:
    encoder, decoder = _encoder(attention).train(), _decoder(attention, memory_dim=EMBED_DIM).train()
    x, lengths = torch.randn(2, 6, EMBED_DIM), torch.tensor([6, 3])
    memory, memory_lengths = encoder(x, lengths)
    out = decoder(torch.randn(2, 4, EMBED_DIM), memory, memory_mask=lengths_to_mask(memory_lengths, 6))
    assert_every_parameter_learns(out.sum(), encoder, decoder)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        memory, _ = encoder(x, lengths)
        out = decoder(torch.randn(2, 4, EMBED_DIM), memory, memory_mask=lengths_to_mask(lengths, 6))
    assert torch.isfinite(out.float()).all()


def test_bad_input() -> None:
    decoder = _decoder("softmax")
    with pytest.raises(ValueError, match=r"memory: expected shape \(2, \*, 12\), received \(2, 5, 16\)"):
        decoder(torch.randn(2, 3, EMBED_DIM), torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="valid names: linear, softmax"):
        _encoder("fancy")
    with pytest.raises(ValueError, match=r"lengths: values must lie in \[0, 3\]"):
        _encoder("softmax")(torch.randn(2, 3, EMBED_DIM), torch.tensor([4, 1]))
