"""Conv2dSubsampling: exact output lengths, padding invariance, gradients."""

from __future__ import annotations

import pytest
import torch

from multiattn.subsampling import Conv2dSubsampling, subsampled_length


def _formula(length: int) -> int:
    l1 = (length - 3) // 2 + 1
    return max((l1 - 3) // 2 + 1, 0) if l1 > 0 else 0


@pytest.mark.parametrize("length", [7, 8, 9, 10, 11, 50, 101, 333])
def test_lengths_match_formula_and_conv_output(length: int) -> None:
    torch.manual_seed(0)
    sub = Conv2dSubsampling(input_dim=20, embed_dim=16, channels=4)
    y, out = sub(torch.randn(1, length, 20), torch.tensor([length]))
    assert y.shape[1] == _formula(length) == int(out[0]) == subsampled_length(length)


def test_tensor_lengths_formula() -> None:
    lengths = torch.arange(0, 60)
    expected = torch.tensor([_formula(int(n)) for n in lengths])
    assert torch.equal(subsampled_length(lengths), expected)


def test_padding_invariance_and_zeroed_padding() -> None:
    torch.manual_seed(0)
    sub = Conv2dSubsampling(input_dim=20, embed_dim=16, channels=4).eval()
    short = torch.randn(1, 37, 20)
    padded = torch.cat([short, torch.randn(1, 23, 20) * 5], dim=1)
    y_short, n_short = sub(short, torch.tensor([37]))
    y_pad, n_pad = sub(padded, torch.tensor([37]))
    assert int(n_short) == int(n_pad)
    torch.testing.assert_close(y_pad[:, : int(n_pad)], y_short)
    assert torch.all(y_pad[:, int(n_pad) :] == 0)


def test_every_parameter_gets_a_gradient() -> None:
    sub = Conv2dSubsampling(input_dim=20, embed_dim=16, channels=4)
    y, _ = sub(torch.randn(2, 30, 20), torch.tensor([30, 20]))
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in sub.parameters())


def test_bad_shapes_raise() -> None:
    sub = Conv2dSubsampling(input_dim=20, embed_dim=16, channels=4)
    with pytest.raises(ValueError, match="expected shape"):
        sub(torch.randn(2, 30, 21), torch.tensor([30, 20]))
    with pytest.raises(ValueError, match="at least 7 frames"):
        sub(torch.randn(1, 5, 20), torch.tensor([5]))
