"""4x convolutional subsampling of speech features.

Two ``3x3`` convolutions with stride 2 over (time, frequency), each followed by ReLU, then a
linear projection of the flattened channels x frequencies to ``embed_dim``. This is the front end
of the speech Transformer and Conformer (Dong, Xu and Xu 2018, "Speech-Transformer"; Gulati et al.
2020, "Conformer", Fig. 1): a 10 ms frame shift becomes 40 ms, which makes self-attention over a
few seconds of audio affordable.

Output length, exact (no padding, kernel 3, stride 2, applied twice)::

    L1 = (L - 3) // 2 + 1        L2 = (L1 - 3) // 2 + 1

Valid output frame ``t`` reads input frames ``4t .. 4t + 6`` only, all inside the valid part of
the input, so outputs on valid frames do not depend on padding.

Shape legend: ``B`` batch, ``L`` input frames, ``F`` mel bins, ``C`` conv channels, ``S`` output
frames (``L2``), ``D`` embed_dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multiattn.masks import check_lengths, check_shape, lengths_to_mask

__all__ = ["Conv2dSubsampling", "subsampled_length"]

_KERNEL = 3
_STRIDE = 2


def _conv_length(length: Tensor | int) -> Tensor | int:
    """Length after one unpadded ``kernel 3 / stride 2`` convolution (never below 0)."""
    if isinstance(length, Tensor):
        return torch.clamp(torch.div(length - _KERNEL, _STRIDE, rounding_mode="floor") + 1, min=0)
    return max((length - _KERNEL) // _STRIDE + 1, 0)


def subsampled_length(length: Tensor | int) -> Tensor | int:
    """Exact output length of :class:`Conv2dSubsampling` for input length(s) ``length``.

    ``L1 = (L - 3) // 2 + 1``, ``L2 = (L1 - 3) // 2 + 1``, clamped at 0 (inputs shorter than 7
    frames produce no output frame).
    """
    return _conv_length(_conv_length(length))


class Conv2dSubsampling(nn.Module):
    """Two strided 2-D convolutions: ``(B, L, F) -> (B, S, D)`` with ``S = subsampled_length(L)``.

    Args:
        input_dim: ``F``, number of feature bins (80 log-mels).
        embed_dim: ``D``, output dimension.
        channels: ``C``, channels of both convolutions (smaller than ``D`` keeps the second
            convolution, the most expensive layer of a small model, cheap).
        dropout: dropout after the output projection.
    """

    def __init__(self, *, input_dim: int, embed_dim: int, channels: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.embed_dim = embed_dim
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, _KERNEL, stride=_STRIDE),
            nn.ReLU(),
            nn.Conv2d(channels, channels, _KERNEL, stride=_STRIDE),
            nn.ReLU(),
        )
        freq_out = subsampled_length(input_dim)
        if freq_out < 1:
            raise ValueError(f"input_dim: expected at least 7 feature bins, received {input_dim}")
        self.proj = nn.Linear(channels * freq_out, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Subsample time by 4.

        Args:
            x: ``(B, L, F)`` features.
            lengths: ``(B,)`` valid input frames.

        Returns:
            ``(y (B, S, D), out_lengths (B,))``; frames past ``out_lengths`` are zero.
        """
        check_shape("x", x, (None, None, self.input_dim))
        batch, frames, _ = x.shape
        check_lengths(lengths, batch, frames)
        if frames < 2 * _KERNEL + 1:
            raise ValueError(f"x: expected at least 7 frames for 4x subsampling, received {frames}")
        h = self.conv(x.unsqueeze(1))  # (B, C, S, F')
        h = h.transpose(1, 2).flatten(2)  # (B, S, C * F')
        y = self.dropout(self.proj(h))  # (B, S, D)
        out_lengths = subsampled_length(lengths)
        valid = lengths_to_mask(out_lengths, y.shape[1])  # (B, S)
        return y * valid.unsqueeze(-1).to(y.dtype), out_lengths
