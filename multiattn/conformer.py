"""Conformer encoder: convolution-augmented Transformer for speech.

Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech Recognition".
Each block is a macaron sandwich (Fig. 1 and eq. 1)::

    x = x + 1/2 FFN(x)
    x = x + MHSA(x)
    x = x + Conv(x)
    x = x + 1/2 FFN(x)
    y = LayerNorm(x)

The self-attention is the core :class:`~multiattn.attention.multihead.MultiHeadAttention`, so its
``(B, nh, S, S)`` weights can be recorded with :func:`multiattn.recording.record_attention`. The
paper uses relative positional encodings inside MHSA; here positions come from the caller
(e.g. a sinusoidal encoding added after subsampling) and from the depthwise convolution, as in
torchaudio's Conformer, which keeps the attention module the shared one.

Padding: attention masks padded keys, and padded frames are zeroed before the depthwise
convolution, so outputs on valid frames do not depend on how much padding follows them
(in eval mode; the convolution module's normalisation is per frame, LayerNorm, by default).

Shape legend: ``B`` batch, ``S`` frames, ``D`` embed_dim, ``nh`` num_heads, ``K`` conv kernel.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from multiattn.attention.multihead import MultiHeadAttention
from multiattn.masks import check_lengths, check_shape, lengths_to_mask

__all__ = ["ConformerConvModule", "ConformerBlock", "ConformerEncoder"]


class _FeedForward(nn.Module):
    """Pre-norm Swish feed-forward module (Gulati et al. 2020, Fig. 4)."""

    def __init__(self, *, embed_dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(embed_dim),
            nn.Linear(embed_dim, ff_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(ff_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over channels of a ``(B, D, S)`` tensor: per frame, hence padding-invariant."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, D, S)


class ConformerConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, Swish, pointwise conv (Gulati et al. 2020, Fig. 2).

    Args:
        embed_dim: ``D``.
        kernel_size: ``K``, odd depthwise kernel (31 in the paper at 40 ms frames; 15 is enough for
            short utterances).
        dropout: dropout on the output.
        norm: ``"layer"`` (per-frame, padding-invariant in training too) or ``"batch"`` (the paper).
    """

    def __init__(
        self, *, embed_dim: int, kernel_size: int = 15, dropout: float = 0.0, norm: str = "layer"
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd number, received {kernel_size}")
        norms = {"layer": _ChannelLayerNorm, "batch": nn.BatchNorm1d}
        if norm not in norms:
            raise ValueError(f"norm: expected one of {sorted(norms)}, received {norm!r}")
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.pointwise_in = nn.Conv1d(embed_dim, 2 * embed_dim, 1)
        self.glu = nn.GLU(dim=1)
        self.depthwise = nn.Conv1d(
            embed_dim, embed_dim, kernel_size, padding=(kernel_size - 1) // 2, groups=embed_dim
        )
        self.norm = norms[norm](embed_dim)
        self.activation = nn.SiLU()
        self.pointwise_out = nn.Conv1d(embed_dim, embed_dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """``x (B, S, D)``, ``valid (B, S)`` bool -> ``(B, S, D)``."""
        h = self.layer_norm(x).transpose(1, 2)  # (B, D, S)
        h = self.glu(self.pointwise_in(h))  # (B, D, S)
        # Zero padded frames so the depthwise kernel near the end sees the same values whatever
        # the amount of padding.
        h = h * valid.unsqueeze(1).to(h.dtype)
        h = self.activation(self.norm(self.depthwise(h)))  # (B, D, S)
        h = self.pointwise_out(h).transpose(1, 2)  # (B, S, D)
        return self.dropout(h)


class ConformerBlock(nn.Module):
    """One Conformer block (Gulati et al. 2020, eq. 1).

    Args:
        embed_dim: ``D``.
        num_heads: ``nh``.
        ff_dim: hidden size of both feed-forward modules (4 D in the paper).
        kernel_size: depthwise kernel of the convolution module.
        dropout: dropout in every sub-module and on the attention weights.
        conv_norm: ``"layer"`` or ``"batch"``, see :class:`ConformerConvModule`.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        ff_dim: int,
        kernel_size: int = 15,
        dropout: float = 0.1,
        conv_norm: str = "layer",
    ) -> None:
        super().__init__()
        self.ff1 = _FeedForward(embed_dim=embed_dim, ff_dim=ff_dim, dropout=dropout)
        self.attn_norm = nn.LayerNorm(embed_dim)
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = ConformerConvModule(
            embed_dim=embed_dim, kernel_size=kernel_size, dropout=dropout, norm=conv_norm
        )
        self.ff2 = _FeedForward(embed_dim=embed_dim, ff_dim=ff_dim, dropout=dropout)
        self.final_norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """``x (B, S, D)``, ``valid (B, S)`` bool (True = real frame) -> ``(B, S, D)``."""
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn_dropout(self.self_attn(self.attn_norm(x), mask=valid))
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ff2(x)
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    """A stack of ``num_layers`` :class:`ConformerBlock` s: ``(x, lengths) -> (y, lengths)``.

    Args:
        embed_dim: ``D``.
        num_layers: number of blocks.
        **block: the other arguments of every block (``num_heads``, ``ff_dim``, ``kernel_size``,
            ``dropout``, ``conv_norm``; see :class:`ConformerBlock`).
    """

    def __init__(self, *, embed_dim: int, num_layers: int, **block: Any) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.layers = nn.ModuleList(ConformerBlock(embed_dim=embed_dim, **block) for _ in range(num_layers))

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Encode.

        Args:
            x: ``(B, S, D)`` subsampled features.
            lengths: ``(B,)`` valid frames.

        Returns:
            ``(y (B, S, D), lengths (B,))``; frames past ``lengths`` are zero.
        """
        check_shape("x", x, (None, None, self.embed_dim))
        check_lengths(lengths, x.shape[0], x.shape[1])
        valid = lengths_to_mask(lengths, x.shape[1])  # (B, S)
        for layer in self.layers:
            x = layer(x, valid)
        return x * valid.unsqueeze(-1).to(x.dtype), lengths
