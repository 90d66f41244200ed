"""Sinusoidal position encodings (Vaswani et al. 2017, "Attention Is All You Need", section 3.5).

``PE[pos, 2i] = sin(pos / 10000^(2i/D))``, ``PE[pos, 2i+1] = cos(pos / 10000^(2i/D))``. For feature
grids, :func:`sinusoidal_2d` encodes the row in one half of the channels and the column in the
other (as in DETR, Carion et al. 2020).

Shape legend: ``B`` batch, ``T`` sequence length, ``D`` embed_dim, ``H, W`` grid.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from multiattn.masks import check_shape

__all__ = ["SinusoidalPositionalEncoding", "cell_centres", "sinusoidal_table", "sinusoidal_2d"]


def cell_centres(size: int, *, device: torch.device | str | None = None) -> Tensor:
    """``(size,)`` float32: the centres of ``size`` equal cells spanning ``[-1, 1]``.

    Cell ``i`` is centred at ``(2 i + 1) / size - 1``: the normalised coordinate of pixel ``i``'s
    centre in ``grid_sample`` / ``affine_grid`` with ``align_corners=False``.
    """
    return (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1


def sinusoidal_table(length: int, embed_dim: int) -> Tensor:
    """``(length, embed_dim)`` table of sines (even channels) and cosines (odd channels)."""
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even for sinusoidal encodings, received {embed_dim}")
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    frequency = torch.exp(
        torch.arange(0, embed_dim, 2, dtype=torch.float32) * (-math.log(10000.0) / embed_dim)
    )
    table = torch.zeros(length, embed_dim)
    table[:, 0::2] = torch.sin(position * frequency)  # (L, D/2)
    table[:, 1::2] = torch.cos(position * frequency)  # (L, D/2)
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoidal position encodings to ``(B, T, D)`` inputs, then dropout.

    Args:
        embed_dim: ``D`` (even).
        max_len: longest supported ``offset + T``.
        dropout: dropout applied after the addition.
    """

    def __init__(self, embed_dim: int, max_len: int = 4096, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)
        # Not persistent: it is a pure function of the arguments, so checkpoints stay small and
        # a model may be loaded with a different max_len.
        self.register_buffer("table", sinusoidal_table(max_len, embed_dim), persistent=False)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        """Add the encodings of positions ``offset .. offset + T - 1``.

        Args:
            x: ``(B, T, D)``.
            offset: position of ``x[:, 0]`` (the number of steps already decoded, when decoding
                incrementally).

        Returns:
            ``(B, T, D)``.
        """
        check_shape("x", x, (None, None, self.embed_dim))
        length = x.shape[1]
        if offset < 0 or offset + length > self.max_len:
            raise ValueError(
                f"positions {offset}..{offset + length - 1} exceed max_len {self.max_len} "
                f"(x of shape {tuple(x.shape)}, offset {offset})"
            )
        return self.dropout(x + self.table[offset : offset + length].to(x.dtype))  # (B, T, D)


def sinusoidal_2d(height: int, width: int, embed_dim: int) -> Tensor:
    """Position encodings of an ``H x W`` grid, flattened row-major: ``(H * W, D)``.

    The first ``D / 2`` channels encode the row, the last ``D / 2`` the column.

    Args:
        height: ``H``.
        width: ``W``.
        embed_dim: ``D``, a multiple of 4.
    """
    if embed_dim % 4:
        raise ValueError(
            f"embed_dim must be a multiple of 4 for 2-d sinusoidal encodings, received {embed_dim}"
        )
    half = embed_dim // 2
    rows = sinusoidal_table(height, half)  # (H, D/2)
    cols = sinusoidal_table(width, half)  # (W, D/2)
    grid = torch.cat(
        [rows[:, None, :].expand(height, width, half), cols[None, :, :].expand(height, width, half)], dim=-1
    )  # (H, W, D)
    return grid.reshape(height * width, embed_dim)  # (H*W, D)
