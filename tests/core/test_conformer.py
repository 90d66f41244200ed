"""ConformerEncoder: shapes, padding and batch invariance, recordable attention, gradients."""

from __future__ import annotations

import pytest
import torch

from multiattn.conformer import ConformerEncoder
from multiattn.recording import record_attention


def _encoder(**kwargs) -> ConformerEncoder:
    torch.manual_seed(0)
    args = dict(embed_dim=16, num_heads=2, num_layers=2, ff_dim=32, kernel_size=5, dropout=0.0)
    args.update(kwargs)
    return ConformerEncoder(**args).eval()


@pytest.mark.parametrize("conv_norm", ["layer", "batch"])
def test_padding_invariance(conv_norm: str) -> None:
    enc = _encoder(conv_norm=conv_norm)
    x = torch.randn(1, 11, 16)
    y_alone, _ = enc(x, torch.tensor([11]))
    padded = torch.cat([x, torch.randn(1, 6, 16) * 3], dim=1)
    y_pad, lengths = enc(padded, torch.tensor([11]))
    torch.testing.assert_close(y_pad[:, :11], y_alone, atol=1e-5, rtol=1e-5)
    assert torch.all(y_pad[:, 11:] == 0)
    assert int(lengths[0]) == 11


def test_batch_invariance() -> None:
    enc = _encoder()
    a, b = torch.randn(1, 9, 16), torch.randn(1, 14, 16)
    batch = torch.zeros(2, 14, 16)
    batch[0, :9], batch[1] = a[0], b[0]
    y, _ = enc(batch, torch.tensor([9, 14]))
    torch.testing.assert_close(y[0, :9], enc(a, torch.tensor([9]))[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[1], enc(b, torch.tensor([14]))[0][0], atol=1e-5, rtol=1e-5)


def test_recorded_attention_equals_fast_path_and_masks_padding() -> None:
    enc = _encoder()
    x = torch.randn(2, 10, 16)
    lengths = torch.tensor([10, 6])
    fast, _ = enc(x, lengths)
    with record_attention(enc) as rec:
        slow, _ = enc(x, lengths)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    weights = rec["layers.0.self_attn"][0].weights  # (B, nh, S, S)
    assert weights.shape == (2, 2, 10, 10)
    assert torch.all(weights[1, :, :6, 6:] == 0)
    torch.testing.assert_close(weights[1, :, :6].sum(-1), torch.ones(2, 6))


def test_gradients_reach_every_parameter() -> None:
    enc = _encoder()
    enc.train()
    y, _ = enc(torch.randn(2, 8, 16), torch.tensor([8, 5]))
    y.pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_input() -> None:
    enc = _encoder()
    with pytest.raises(ValueError, match="expected shape"):
        enc(torch.randn(2, 8, 15), torch.tensor([8, 5]))
    with pytest.raises(ValueError, match="even|odd"):
        ConformerEncoder(embed_dim=16, num_heads=2, num_layers=1, ff_dim=32, kernel_size=4)
