"""Attention decoders for speech: Transformer cross-attention, or location-aware LSTM.

Both expose one interface so training, beam search and joint CTC/attention decoding do not care
which one is used:

* ``forward(tokens_in (B, T), memory (B, S, D), memory_lengths (B,)) -> logits (B, T, V)``,
  teacher-forced (``tokens_in`` starts with bos);
* ``init_state(memory, memory_lengths) -> state`` and
  ``step(tokens (N, t), state, *, return_attention) -> (log_probs (N, V), state, attention (N, S) | None)``,
  one incremental step in the contract of :mod:`multiattn.decoding` (state rows reorderable).

``"transformer"``: the core's :class:`multiattn.token_decoder.TokenDecoder` (Vaswani et al. 2017)
with a KV cache, so a step costs one position. Its alignment is the cross-attention of
``alignment_layer``, averaged over heads.

``"location"``: an LSTM decoder with :class:`multiattn.attention.location.LocationAwareAttention`
(Chorowski et al. 2015): ``s_i = LSTM([y_{i-1}; c_{i-1}], s_{i-1})``, ``c_i, alpha_i =
Attend(s_i, h, alpha_{i-1})``, ``p(y_i) = softmax(W [s_i; c_i])``.

Shape legend: ``B`` batch, ``N`` hypotheses, ``T``/``t`` target steps, ``S`` encoder frames,
``D`` embed_dim, ``V`` vocabulary, ``nh`` heads, ``A`` attention dim.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from multiattn.attention.location import LocationAwareAttention
from multiattn.masks import lengths_to_mask
from multiattn.recurrent import teacher_force
from multiattn.token_decoder import TokenDecoder
from multiattn.transformer import DecoderCache

__all__ = [
    "TransformerAttentionDecoder",
    "LocationLSTMDecoder",
]


class TransformerAttentionDecoder(TokenDecoder):
    """The core's :class:`~multiattn.token_decoder.TokenDecoder` (same arguments, ``embed_dim``
    equal to the encoder's) over the encoder frames, in the speech decoders' interface."""

    def forward(
        self, tokens_in: Tensor, memory: Tensor, memory_lengths: Tensor, *, tgt_lengths: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits ``(B, T, V)``."""
        memory_mask = lengths_to_mask(memory_lengths, memory.shape[1])  # (B, S)
        return self.decode(tokens_in, memory, memory_mask=memory_mask, tgt_lengths=tgt_lengths)[0]

    def init_state(self, memory: Tensor, memory_lengths: Tensor) -> DecoderCache:
        # DecoderCache shares each utterance's cross-attention keys / values across its beams.
        return self.init_cache(memory, lengths_to_mask(memory_lengths, memory.shape[1]))

    def step(
        self, tokens: Tensor, state: Any, *, return_attention: bool = False
    ) -> tuple[Tensor, Any, Tensor | None]:
        """One cached step on the last token of ``tokens (N, t)``: ``(log_probs (N, V), state, (N, S) | None)``."""
        log_probs, attention = self.decode_step(tokens, state, with_alignment=return_attention)
        return log_probs, state, attention


class LocationLSTMDecoder(nn.Module):
    """Single-layer LSTM decoder with location-aware attention (Chorowski et al. 2015).

    Args:
        vocab_size: ``V``.
        embed_dim: ``D``, encoder output size (also the token embedding size).
        hidden_dim: LSTM state size.
        attn_dim: ``A``.
        dropout: dropout on the LSTM output.
        conv_channels / kernel_size: location filters.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        attn_dim: int,
        dropout: float = 0.1,
        conv_channels: int = 10,
        kernel_size: int = 31,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.cell = nn.LSTMCell(2 * embed_dim, hidden_dim)
        self.attention = LocationAwareAttention(
            query_dim=hidden_dim,
            key_dim=embed_dim,
            attn_dim=attn_dim,
            conv_channels=conv_channels,
            kernel_size=kernel_size,
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim + embed_dim, vocab_size)

    def init_state(self, memory: Tensor, memory_lengths: Tensor) -> dict[str, Tensor]:
        batch, frames, _ = memory.shape
        zeros = memory.new_zeros(batch, self.hidden_dim)
        prev = memory.new_zeros(batch, frames, dtype=torch.float32)
        prev[:, 0] = 1.0  # start looking at the first frame
        return {
            "h": zeros,
            "c": zeros.clone(),
            "context": memory.new_zeros(batch, self.embed_dim),
            "weights": prev,
            "memory": memory,
            "keys_proj": self.attention.precompute(memory),
            "mask": lengths_to_mask(memory_lengths, frames),
        }

    def _advance(self, token: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        emb = self.embedding(token)  # (N, D)
        h, c = self.cell(torch.cat([emb, state["context"].to(emb.dtype)], dim=-1), (state["h"], state["c"]))
        context, weights = self.attention(
            h, state["memory"], state["weights"], mask=state["mask"], keys_proj=state["keys_proj"]
        )  # (N, D), (N, S)
        logits = self.out(self.dropout(torch.cat([h, context.to(h.dtype)], dim=-1)))  # (N, V)
        new_state = dict(state, h=h, c=c, context=context, weights=weights)
        return logits, new_state

    def forward(
        self, tokens_in: Tensor, memory: Tensor, memory_lengths: Tensor, *, tgt_lengths: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits ``(B, T, V)`` (one recurrent step per target position)."""

        def advance(token: Tensor, state: dict[str, Tensor]) -> tuple[tuple[Tensor], dict[str, Tensor]]:
            logits, state = self._advance(token, state)
            return (logits,), state

        return teacher_force(advance, tokens_in, self.init_state(memory, memory_lengths))[0]  # (B, T, V)

    def alignment(self, recorder: Any) -> Tensor:
        """``(B, T, S)`` attention weights of every step from a recorder."""
        return recorder.stacked("attention", dim=1).float()

    def step(
        self, tokens: Tensor, state: Any, *, return_attention: bool = False
    ) -> tuple[Tensor, Any, Tensor | None]:
        logits, state = self._advance(tokens[:, -1], state)
        attention = state["weights"].float() if return_attention else None
        return logits.float().log_softmax(dim=-1), state, attention
