"""Caption decoders that attend over an image grid at every word.

- :class:`ShowAttendTellDecoder`: the LSTM of Show, Attend and Tell (Xu et al. 2015) with the
  core's :class:`~multiattn.attention.spatial.SoftSpatialAttention` (gating scalar beta, doubly
  stochastic penalty), initial state from the mean annotation (eq. 5) and the deep output layer
  ``p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))`` (eq. 7).
- :class:`TransformerCaptionDecoder`: the core's pre-norm :class:`~multiattn.transformer.TransformerDecoder`
  (Vaswani et al. 2017) with cross-attention over the grid, which gets 2-d sinusoidal positions
  (:func:`~multiattn.positional.sinusoidal_2d`) so the heads can tell cells apart.

Both share one surface: ``forward(features, tokens, lengths) -> (logits, attention)`` for
teacher-forced training, and ``init_state(features)`` / ``step(tokens, state)`` for the core's
searches. Per-word attention is ``(.., H, W)`` over the grid (transformer: the cross-attention of
``attention_layer``, averaged over heads).

Shape legend: ``B`` batch (or hypotheses), ``T`` target steps, ``C`` feature channels,
``H, W`` grid, ``N = H*W`` cells, ``D`` embed dim, ``Dh`` LSTM hidden size, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from multiattn.attention.spatial import SoftSpatialAttention, flatten_grid
from multiattn.decoding import ItemMemory
from multiattn.positional import SinusoidalPositionalEncoding, sinusoidal_2d
from multiattn.recording import record_attention
from multiattn.transformer import TransformerDecoder

__all__ = ["GridMemory", "ShowAttendTellDecoder", "TransformerCaptionDecoder", "DECODERS"]


class GridMemory(ItemMemory):
    """An image's grid and its attention projection, shared by all hypotheses of that image
    (the core's :class:`~multiattn.decoding.ItemMemory` with named fields).

    Args:
        features: ``(B, N, C)`` per-image grid.
        features_proj: ``(B, N, A)`` its attention projection.
    """

    def __init__(self, features: Tensor, features_proj: Tensor) -> None:
        super().__init__(features, features_proj)

    @property
    def features(self) -> Tensor:
        return self.shared()[0]  # (G, N, C): one grid per group of rows of one image

    @property
    def features_proj(self) -> Tensor:
        return self.shared()[1]  # (G, N, A)


class ShowAttendTellDecoder(nn.Module):
    """LSTM decoder with soft spatial attention (Xu et al. 2015, "Show, Attend and Tell").

    Args:
        vocab_size: ``V``.
        feature_dim: ``C``, channels of the encoder grid.
        embed_dim: word embedding size (also the deep-output size).
        hidden_dim: ``Dh``.
        attn_dim: hidden size of the attention MLP.
        dropout: dropout before the output layer.
        gate: use the gating scalar beta.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        attn_dim: int = 128,
        dropout: float = 0.3,
        gate: bool = True,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.attention = SoftSpatialAttention(
            feature_dim=feature_dim, hidden_dim=hidden_dim, attn_dim=attn_dim, gate=gate
        )
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.out_hidden = nn.Linear(hidden_dim, embed_dim)
        self.out_context = nn.Linear(feature_dim, embed_dim)
        self.out = nn.Linear(embed_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, features: Tensor) -> dict[str, Any]:
        """``features (B, C, H, W)`` -> the decoding state (hypothesis dimension first everywhere)."""
        flat, (height, width) = flatten_grid(features)  # (B, N, C)
        mean = flat.mean(dim=1)  # (B, C)
        projected = self.attention.precompute(flat, grid_hw=(height, width))  # (B, N, A)
        return {
            "memory": GridMemory(flat, projected),
            "h": torch.tanh(self.init_h(mean)),
            "c": torch.tanh(self.init_c(mean)),
            "grid": (height, width),
        }

    def _advance(self, previous: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """Consume ``previous`` tokens ``(B,)``: attend with ``h_{t-1}``, update the LSTM, score the next word."""
        embedded = self.embedding(previous)  # (B, E)
        memory = state["memory"]
        attended = self.attention(
            memory.features, state["h"], grid_hw=state["grid"], features_proj=memory.features_proj
        )
        h, c = self.cell(torch.cat([embedded, attended.context], dim=-1), (state["h"], state["c"]))
        logits = self.out(self.dropout(embedded + self.out_hidden(h) + self.out_context(attended.context)))
        return logits, {**state, "h": h, "c": c}, attended.weights  # (B, V), state, (B, H, W)

    def forward(self, features: Tensor, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced decoding.

        Args:
            features: ``(B, C, H, W)``.
            tokens: ``(B, T)`` input tokens (``<bos> w1 .. w_{T-1}``, padded).
            lengths: ``(B,)`` valid input steps (unused by the recurrence: padded steps come after
                the valid ones and their outputs are masked in the loss).

        Returns:
            ``(logits (B, T, V), attention (B, T, H, W))``.
        """
        state = self.init_state(features)
        logits, weights = [], []
        for step in range(tokens.shape[1]):
            step_logits, state, step_weights = self._advance(tokens[:, step], state)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)  # (B, T, V), (B, T, H, W)

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """One search step: ``tokens (B, t)`` so far -> ``(log_probs (B, V), state, attention (B, H, W))``."""
        logits, state, weights = self._advance(tokens[:, -1], state)
        return torch.log_softmax(logits.float(), dim=-1), state, weights


class TransformerCaptionDecoder(nn.Module):
    """Transformer decoder with cross-attention over the feature grid.

    Args:
        vocab_size: ``V``.
        feature_dim: ``C``.
        embed_dim: ``D``.
        num_heads: attention heads.
        num_layers: decoder layers.
        ff_dim: feed-forward size.
        dropout: dropout.
        max_len: longest caption (positions) it can decode.
        attention_layer: which layer's cross-attention is the per-word map (``-1`` = last).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 256,
        num_heads: int = 4,
        num_layers: int = 3,
        ff_dim: int = 1024,
        dropout: float = 0.1,
        max_len: int = 64,
        attention_layer: int = -1,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.attention_layer = attention_layer % num_layers
        self.memory_proj = nn.Linear(feature_dim, embed_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.positions = SinusoidalPositionalEncoding(embed_dim, max_len, dropout=dropout)
        self.decoder = TransformerDecoder(
            embed_dim=embed_dim, num_heads=num_heads, num_layers=num_layers, ff_dim=ff_dim, dropout=dropout
        )
        self.out = nn.Linear(embed_dim, vocab_size)

    def memory(self, features: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``(B, C, H, W)`` -> ``((B, N, D) memory with 2-d positions, (H, W))``."""
        flat, (height, width) = flatten_grid(features)  # (B, N, C)
        positions = sinusoidal_2d(height, width, self.embed_dim).to(device=flat.device, dtype=flat.dtype)
        return self.memory_proj(flat) + positions, (height, width)  # (B, N, D)

    def _embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        return self.positions(self.embedding(tokens) * math.sqrt(self.embed_dim), offset=offset)  # (B, T, D)

    def _cross_attention(self, recorder: Any, grid: tuple[int, int]) -> Tensor:
        """The chosen layer's recorded cross-attention, averaged over heads: ``(B, T, H, W)``."""
        weights = recorder[f"layers.{self.attention_layer}.cross_attn"][-1].weights  # (B, nh, T, N)
        batch, _, steps, _ = weights.shape
        return weights.float().mean(dim=1).view(batch, steps, *grid)  # (B, T, N) -> (B, T, H, W)

    def forward(
        self, features: Tensor, tokens: Tensor, lengths: Tensor, *, with_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding (all steps at once).

        Args:
            features: ``(B, C, H, W)``.
            tokens: ``(B, T)`` input tokens, padded.
            lengths: ``(B,)`` valid input steps.
            with_attention: also return the per-step grid attention (explicit, slower path).

        Returns:
            ``(logits (B, T, V), attention (B, T, H, W) or None)``.
        """
        memory, grid = self.memory(features)
        x = self._embed(tokens)
        if not with_attention:
            return self.out(self.decoder(x, memory, tgt_lengths=lengths)), None
        with record_attention(self.decoder) as recorder:
            hidden = self.decoder(x, memory, tgt_lengths=lengths)
        return self.out(hidden), self._cross_attention(recorder, grid)

    def init_state(self, features: Tensor) -> dict[str, Any]:
        """Project the memory once into the decoder's reorderable cache."""
        memory, grid = self.memory(features)
        return {"cache": self.decoder.init_cache(memory), "grid": grid}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """One search step: ``tokens (B, t)`` -> ``(log_probs (B, V), state, attention (B, H, W))``."""
        cache = state["cache"]
        x = self._embed(tokens[:, -1:], offset=cache.length)  # (B, 1, D)
        with record_attention(self.decoder) as recorder:
            hidden = self.decoder(x, cache=cache)  # (B, 1, D)
        log_probs = torch.log_softmax(self.out(hidden[:, 0]).float(), dim=-1)
        return log_probs, state, self._cross_attention(recorder, state["grid"])[:, 0]


DECODERS = ("show_attend_tell", "transformer")
