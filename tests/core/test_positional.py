"""Sinusoidal position encodings (Vaswani et al. 2017)."""

from __future__ import annotations

import math

import pytest
import torch

from multiattn.positional import SinusoidalPositionalEncoding, sinusoidal_2d, sinusoidal_table


def test_table_values_follow_the_formula() -> None:
    table = sinusoidal_table(10, 8)
    pos, i = 7, 2  # channel 2i = 4 is a sine, 2i + 1 = 5 its cosine
    angle = pos / 10000 ** (2 * i / 8)
    assert table[pos, 4].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[pos, 5].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert torch.all(table[0, 0::2] == 0) and torch.all(table[0, 1::2] == 1)


def test_offset_equals_slice_of_full_sequence() -> None:
    encoding = SinusoidalPositionalEncoding(8, 32).eval()
    x = torch.randn(2, 6, 8)
    full = encoding(x)
    steps = torch.cat([encoding(x[:, t : t + 1], offset=t) for t in range(6)], dim=1)
    torch.testing.assert_close(steps, full)
    torch.testing.assert_close(full - x, sinusoidal_table(6, 8).expand(2, 6, 8))


def test_errors_name_shapes() -> None:
    encoding = SinusoidalPositionalEncoding(8, 4)
    with pytest.raises(ValueError, match=r"expected shape \(\*, \*, 8\), received \(1, 2, 6\)"):
        encoding(torch.zeros(1, 2, 6))
    with pytest.raises(ValueError, match="exceed max_len 4"):
        encoding(torch.zeros(1, 3, 8), offset=2)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_table(3, 5)


def test_sinusoidal_2d_rows_and_columns() -> None:
    grid = sinusoidal_2d(3, 4, 16)  # (H*W, D)
    assert grid.shape == (12, 16)
    rows, cols = grid.view(3, 4, 16)[..., :8], grid.view(3, 4, 16)[..., 8:]
    assert torch.all(rows == rows[:, :1]) and torch.all(cols == cols[:1])  # row half constant along W
    torch.testing.assert_close(rows[:, 0], sinusoidal_table(3, 8))
    torch.testing.assert_close(cols[0], sinusoidal_table(4, 8))
    assert len({tuple(v.tolist()) for v in grid}) == 12  # every cell distinct
    with pytest.raises(ValueError, match="multiple of 4"):
        sinusoidal_2d(2, 2, 6)
