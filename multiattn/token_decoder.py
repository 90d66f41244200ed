"""Token decoder: embedding, sinusoidal positions, pre-norm :class:`TransformerDecoder`, output layer.

The Transformer decoder of Vaswani et al. (2017): tokens are embedded, scaled by ``sqrt(D)``, given
sinusoidal positions and decoded against a memory (an image grid, encoder frames) by the core's
:class:`~multiattn.transformer.TransformerDecoder`. Its *alignment* is the cross-attention of one
layer (``alignment_layer``) averaged over heads, read from the recorded weights
(:mod:`multiattn.recording`), so the fast path computes no weights unless asked.

Captioning and speech recognition both use this one class (captioning adds a projection of the
image grid into the memory); their decoders differ only in what the memory is.

Shape legend: ``B`` batch (or hypotheses), ``T`` target steps, ``S`` memory length, ``D``
embed_dim, ``V`` vocabulary, ``nh`` heads.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from multiattn.positional import SinusoidalPositionalEncoding
from multiattn.recording import AttentionRecorder, record_attention
from multiattn.transformer import DecoderCache, TransformerDecoder

__all__ = ["TokenDecoder"]


class TokenDecoder(nn.Module):
    """Token embedding + positions + :class:`TransformerDecoder` + output projection.

    Args:
        vocab_size: ``V``.
        embed_dim: ``D``.
        num_heads: ``nh``.
        num_layers: decoder layers.
        ff_dim: feed-forward size.
        dropout: dropout (positions, attention, residual branches).
        max_len: longest target (positions) it can decode.
        alignment_layer: which layer's cross-attention is the alignment (``-1`` = last).
        padding_idx: embedding row kept at zero and without gradient (``None``: none).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        embed_dim: int,
        num_heads: int,
        num_layers: int,
        ff_dim: int,
        dropout: float = 0.1,
        max_len: int = 1024,
        alignment_layer: int = -1,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.alignment_layer = alignment_layer % num_layers
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.positions = SinusoidalPositionalEncoding(embed_dim, max_len, dropout=dropout)
        self.decoder = TransformerDecoder(
            embed_dim=embed_dim, num_heads=num_heads, num_layers=num_layers, ff_dim=ff_dim, dropout=dropout
        )
        self.out = nn.Linear(embed_dim, vocab_size)

    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """``tokens (B, T)`` -> ``(B, T, D)`` scaled embeddings plus positions from ``offset``."""
        return self.positions(self.embedding(tokens) * math.sqrt(self.embed_dim), offset=offset)

    def alignment(self, recorder: AttentionRecorder) -> Tensor:
        """``(B, T, S)`` head-averaged cross-attention of :attr:`alignment_layer` (a recorder of :attr:`decoder`)."""
        maps = recorder[f"layers.{self.alignment_layer}.cross_attn"]  # one (B, nh, t, S) per call
        return torch.cat([m.weights.float().mean(dim=1) for m in maps], dim=1)  # (B, T, S)

    def decode(
        self,
        tokens: Tensor,
        memory: Tensor,
        *,
        memory_mask: Tensor | None = None,
        tgt_lengths: Tensor | None = None,
        with_alignment: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding, all steps at once.

        Args:
            tokens: ``(B, T)`` input tokens (bos first), padded.
            memory: ``(B, S, D)``.
            memory_mask: ``(B, S)`` bool, True = valid.
            tgt_lengths: ``(B,)`` valid input steps.
            with_alignment: also return the alignment (explicit attention, slower).

        Returns:
            ``(logits (B, T, V), alignment (B, T, S) or None)``.
        """
        x = self.embed(tokens)  # (B, T, D)
        if not with_alignment:
            return self.out(self.decoder(x, memory, memory_mask=memory_mask, tgt_lengths=tgt_lengths)), None
        with record_attention(self.decoder) as recorder:
            hidden = self.decoder(x, memory, memory_mask=memory_mask, tgt_lengths=tgt_lengths)
        return self.out(hidden), self.alignment(recorder)

    def init_cache(self, memory: Tensor, memory_mask: Tensor | None = None) -> DecoderCache:
        """Project ``memory (B, S, D)`` once per layer into a reorderable cache (items share their keys)."""
        return self.decoder.init_cache(memory, memory_mask)

    def decode_step(
        self, tokens: Tensor, cache: DecoderCache, *, with_alignment: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """One cached step on the last of ``tokens (N, t)``.

        Returns:
            ``(log_probs (N, V) float32, alignment (N, S) or None)``; ``cache`` grows by one step.
        """
        x = self.embed(tokens[:, -1:], offset=cache.length)  # (N, 1, D)
        alignment = None
        if with_alignment:
            with record_attention(self.decoder) as recorder:
                hidden = self.decoder(x, cache=cache)  # (N, 1, D)
            alignment = self.alignment(recorder)[:, 0]  # (N, S)
        else:
            hidden = self.decoder(x, cache=cache)  # (N, 1, D)
        return torch.log_softmax(self.out(hidden[:, 0]).float(), dim=-1), alignment
