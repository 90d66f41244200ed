"""Pre-norm Transformer encoder and decoder (Vaswani et al. 2017; pre-norm as in Xiong et al. 2020).

Pre-norm (``x + f(LayerNorm(x))``, one final LayerNorm) trains stably without warm-up tricks on
small models. The self-attention of each block is picked by name from
:data:`multiattn.attention.ATTENTION` (``"softmax"`` or ``"linear"``); the decoder's
cross-attention is always a :class:`MultiHeadAttention`, so its weights can be recorded as
alignments.

Incremental decoding: :meth:`TransformerDecoder.init_cache` projects the memory once per layer;
feeding ``x`` one step at a time with that cache gives the same outputs as the full forward.
Positions are the caller's business (add encodings with ``offset=cache.length``).

Shape legend: ``B`` batch, ``T`` target length, ``S`` source (memory) length, ``D`` embed_dim,
``Dm`` memory_dim, ``F`` ff_dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from multiattn.attention import ATTENTION, KVCache, LinearAttentionState, MultiHeadAttention, build_attention
from multiattn.attention.multihead import split_heads
from multiattn.decoding.grouping import ItemMemory
from multiattn.masks import check_lengths, check_shape, lengths_to_mask

__all__ = [
    "FeedForward",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "TransformerDecoderLayer",
    "TransformerDecoder",
    "DecoderCache",
]


class FeedForward(nn.Sequential):
    """Position-wise ``Linear -> GELU -> Dropout -> Linear``: ``(B, T, D) -> (B, T, D)``."""

    def __init__(self, embed_dim: int, ff_dim: int, *, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(embed_dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, embed_dim)
        )


def _check_attention(name: str) -> None:
    if name not in ATTENTION:
        raise ValueError(f"unknown attention {name!r}; valid names: {', '.join(sorted(ATTENTION))}")


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block: self-attention then feed-forward, each as a residual branch.

    Args:
        embed_dim: ``D``.
        num_heads: attention heads.
        ff_dim: ``F``, hidden size of the feed-forward branch.
        dropout: dropout on attention weights and on each residual branch.
        attention: ``"softmax"`` or ``"linear"``.
    """

    def __init__(
        self, *, embed_dim: int, num_heads: int, ff_dim: int, dropout: float = 0.1, attention: str = "softmax"
    ) -> None:
        super().__init__()
        _check_attention(attention)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.self_attn = build_attention(attention, embed_dim=embed_dim, num_heads=num_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.ff = FeedForward(embed_dim, ff_dim, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """``x (B, T, D)``, key padding ``mask (B, T)`` (True = valid) -> ``(B, T, D)``."""
        x = x + self.dropout(self.self_attn(self.norm1(x), mask=mask))
        return x + self.dropout(self.ff(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` :class:`TransformerEncoderLayer` s and a final LayerNorm;
    ``(x, lengths) -> (y, lengths)``.

    Args:
        embed_dim: ``D``.
        num_layers: number of layers.
        **layer: the other arguments of every layer (``num_heads``, ``ff_dim``, ``dropout``,
            ``attention``; see :class:`TransformerEncoderLayer`).
    """

    def __init__(self, *, embed_dim: int, num_layers: int, **layer: Any) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dim=embed_dim, **layer) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode a padded batch.

        Args:
            x: ``(B, T, D)``.
            lengths: ``(B,)`` valid lengths (``None``: all ``T``).

        Returns:
            ``y (B, T, D)`` with padding positions zeroed, and ``lengths (B,)``.
        """
        check_shape("x", x, (None, None, self.embed_dim))
        batch, length, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), length, dtype=torch.long, device=x.device)
        check_lengths(lengths, batch, length)
        mask = lengths_to_mask(lengths, length)  # (B, T)
        for layer in self.layers:
            x = layer(x, mask=mask)
        y = self.norm(x) * mask.unsqueeze(-1).to(x.dtype)  # (B, T, D)
        return y, lengths


@dataclass
class DecoderCache:
    """Per-layer caches of a :class:`TransformerDecoder`, reorderable for beam search.

    Attributes:
        self_attn: one self-attention cache per layer (appended every step).
        cross_attn: one static cross-attention cache per layer (memory projected once).
        memory_mask: ``(G, S)`` bool, ``None`` when every memory position is valid.
        memory: every layer's cross-attention ``(key, value)`` ``(B0, nh, S, hd)`` (and the memory
            mask ``(B0, S)``) of the original items, shared by their hypothesis rows
            (:class:`multiattn.decoding.grouping.ItemMemory`): after a reorder the cross-attention
            caches and :attr:`memory_mask` hold one row per group of consecutive rows of one item
            (grouped queries of :class:`~multiattn.attention.multihead.MultiHeadAttention`), and
            are re-gathered only when rows change item. ``None``: every row owns its copy and
            every reorder gathers it.
    """

    self_attn: list[KVCache | LinearAttentionState]
    cross_attn: list[KVCache]
    memory_mask: Tensor | None = None
    memory: ItemMemory | None = None

    @property
    def length(self) -> int:
        """Number of target steps decoded so far (the position offset of the next step)."""
        return self.self_attn[0].length if self.self_attn else 0

    def reorder(self, indices: Tensor) -> None:
        """Keep batch rows ``indices`` (``(B',)`` long), in that order, in every layer."""
        for cache in self.self_attn:
            cache.reorder(indices)
        if self.memory is None:
            for cache in self.cross_attn:
                cache.reorder(indices)
            if self.memory_mask is not None:
                self.memory_mask = self.memory_mask.index_select(0, indices)
            return
        self.memory = self.memory.reorder(indices)
        shared = self.memory.shared()  # (G, ...) per tensor; the same tensors while no row changes item
        for index, cache in enumerate(self.cross_attn):
            cache.key, cache.value = shared[2 * index], shared[2 * index + 1]
        if self.memory_mask is not None:
            self.memory_mask = shared[-1]


class TransformerDecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the memory, feed-forward.

    Args:
        embed_dim: ``D``.
        num_heads: attention heads.
        ff_dim: ``F``.
        dropout: dropout.
        memory_dim: ``Dm`` (default ``embed_dim``).
        attention: self-attention kind, ``"softmax"`` or ``"linear"``.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float = 0.1,
        memory_dim: int | None = None,
        attention: str = "softmax",
    ) -> None:
        super().__init__()
        _check_attention(attention)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.self_attn = build_attention(attention, embed_dim=embed_dim, num_heads=num_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.cross_attn = MultiHeadAttention(embed_dim, num_heads, context_dim=memory_dim, dropout=dropout)
        self.norm3 = nn.LayerNorm(embed_dim)
        self.ff = FeedForward(embed_dim, ff_dim, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        *,
        memory_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        self_cache: KVCache | LinearAttentionState | None = None,
        cross_cache: KVCache | None = None,
    ) -> Tensor:
        """``x (B, T, D)``, ``memory (B, S, Dm)`` -> ``(B, T, D)``; ``tgt_mask (B, T)`` key padding."""
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, mask=tgt_mask, is_causal=True, cache=self_cache))
        h = self.norm2(x)
        x = x + self.dropout(self.cross_attn(h, memory, mask=memory_mask, cache=cross_cache))
        return x + self.dropout(self.ff(self.norm3(x)))


class TransformerDecoder(nn.Module):
    """A stack of ``num_layers`` :class:`TransformerDecoderLayer` s and a final LayerNorm.

    Args:
        embed_dim: ``D``.
        num_layers: number of layers.
        memory_dim: ``Dm`` (default ``embed_dim``).
        **layer: the other arguments of every layer (``num_heads``, ``ff_dim``, ``dropout``,
            ``attention``; see :class:`TransformerDecoderLayer`).
    """

    def __init__(
        self, *, embed_dim: int, num_layers: int, memory_dim: int | None = None, **layer: Any
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.memory_dim = embed_dim if memory_dim is None else memory_dim
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(embed_dim=embed_dim, memory_dim=memory_dim, **layer)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embed_dim)

    @torch.no_grad()
    def init_cache(self, memory: Tensor, memory_mask: Tensor | None = None) -> DecoderCache:
        """Project ``memory (B, S, Dm)`` once per layer into a :class:`DecoderCache`.

        Under ``no_grad``: caches serve inference-time decoding.
        """
        check_shape("memory", memory, (None, None, self.memory_dim))
        if memory_mask is not None:
            check_shape("memory_mask", memory_mask, (memory.shape[0], memory.shape[1]))
        self_caches = [layer.self_attn.make_cache() for layer in self.layers]
        cross_caches = []
        for layer in self.layers:
            cache = layer.cross_attn.make_cache(static=True)
            attn = layer.cross_attn
            key = split_heads(attn.k_proj(memory), attn.num_heads)  # (B, nh, S, hd)
            value = split_heads(attn.v_proj(memory), attn.num_heads)  # (B, nh, S, hd)
            cache.append(key, value)
            cross_caches.append(cache)
        per_item = [tensor for cache in cross_caches for tensor in (cache.key, cache.value)]
        per_item += [] if memory_mask is None else [memory_mask]
        return DecoderCache(self_caches, cross_caches, memory_mask, ItemMemory(*per_item))

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        memory_mask: Tensor | None = None,
        tgt_lengths: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Decode (teacher-forced when ``cache is None``; incrementally with a cache).

        Args:
            x: ``(B, T, D)`` embedded targets (positions already added).
            memory: ``(B, S, Dm)``; may be ``None`` when ``cache`` holds it.
            memory_mask: ``(B, S)`` bool, True = valid (taken from ``cache`` when it holds one).
            tgt_lengths: ``(B,)`` valid target lengths; padding positions of the output are
                zeroed (causality already keeps them from influencing valid ones).
            cache: a :class:`DecoderCache` from :meth:`init_cache`; this call's steps are appended.

        Returns:
            ``(B, T, D)``.
        """
        check_shape("x", x, (None, None, self.embed_dim))
        batch, length, _ = x.shape
        if cache is None:
            if memory is None:
                raise ValueError("memory: expected shape (B, S, Dm), received None (and no cache)")
            check_shape("memory", memory, (batch, None, self.memory_dim))
        elif memory_mask is None:
            memory_mask = cache.memory_mask
        tgt_mask = None
        if tgt_lengths is not None:
            check_lengths(tgt_lengths, batch, length, name="tgt_lengths")
            tgt_mask = lengths_to_mask(tgt_lengths, length)  # (B, T)
            if cache is not None and cache.length:
                past = torch.ones(batch, cache.length, dtype=torch.bool, device=x.device)
                tgt_mask = torch.cat([past, tgt_mask], dim=1)  # (B, S_past + T)
        for index, layer in enumerate(self.layers):
            x = layer(
                x,
                memory if cache is None else None,
                memory_mask=memory_mask,
                tgt_mask=tgt_mask,
                self_cache=None if cache is None else cache.self_attn[index],
                cross_cache=None if cache is None else cache.cross_attn[index],
            )
        y = self.norm(x)
        if tgt_lengths is not None:
            y = y * lengths_to_mask(tgt_lengths, length).unsqueeze(-1).to(y.dtype)  # (B, T, D)
        return y
