"""Additive (concat / MLP) attention for recurrent decoders.

Bahdanau, Cho and Bengio 2015, "Neural Machine Translation by Jointly Learning to Align and
Translate", eq. (6) and appendix A.1.2: ``e_j = v^T tanh(W q + U k_j)``, ``alpha = softmax(e)``,
``context = sum_j alpha_j v_j``.

A recurrent decoder calls the module once per output step with the same keys, so the key
projection ``U k`` can be computed once per sequence with :meth:`AdditiveAttention.precompute`
and passed back as ``keys_proj``.

Shape legend: ``B`` batch, ``S`` key/source length, ``Dq`` query dim, ``Dk`` key dim,
``Dv`` value dim, ``A`` attention (hidden) dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multiattn.masks import check_shape
from multiattn.recording import emit, is_recording

__all__ = ["AdditiveAttention", "masked_softmax", "weighted_sum"]


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` where masked positions get exactly zero weight.

    Computed in float32 (bf16 logits lose the small differences between frames). A row whose
    positions are all masked gets all-zero weights instead of NaN, and its gradient stays finite:
    masked logits are filled with the most negative finite float rather than ``-inf``, so the
    softmax never divides by zero, and the mask then zeroes the row.

    Args:
        scores: logits of any shape.
        mask: bool, broadcastable to ``scores``, ``True`` = may attend; ``None`` masks nothing.
        dim: the axis to normalise over.

    Returns:
        float32 weights, same shape as ``scores``.
    """
    scores = scores.float()
    if mask is None:
        return torch.softmax(scores, dim=dim)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask: expected dtype torch.bool (True = may attend), received {mask.dtype}")
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask


def weighted_sum(weights: Tensor, values: Tensor) -> Tensor:
    """``(B, S)`` weights x ``(B, S, Dv)`` values -> ``(B, Dv)`` context."""
    context = torch.bmm(weights.to(values.dtype).unsqueeze(1), values)  # (B, 1, Dv)
    return context.squeeze(1)  # (B, Dv)


class AdditiveAttention(nn.Module):
    """Bahdanau additive attention: one query vector against a sequence of keys.

    The weights are inherent to the mechanism (the context is their weighted sum), so they are
    always computed; they are handed to the recorder only inside
    :func:`multiattn.recording.record_attention`, with axes ``("batch", "key")``.

    Args:
        query_dim: ``Dq``, size of the decoder state.
        key_dim: ``Dk``, size of each key (encoder annotation).
        attn_dim: ``A``, size of the hidden layer of the scoring MLP.
    """

    def __init__(self, *, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.query_dim = query_dim
        self.key_dim = key_dim
        self.attn_dim = attn_dim
        # One bias is enough: biases on both projections would simply add up inside the tanh.
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, attn_dim, bias=True)
        self.score = nn.Linear(attn_dim, 1, bias=False)

    def precompute(self, keys: Tensor) -> Tensor:
        """Project the keys once per sequence.

        Args:
            keys: ``(B, S, Dk)``.

        Returns:
            ``(B, S, A)``, to pass as ``keys_proj`` at every decoder step.
        """
        check_shape("keys", keys, (None, None, self.key_dim))
        return self.key_proj(keys)

    def scores(self, query: Tensor, keys_proj: Tensor, extra: Tensor | None = None) -> Tensor:
        """Unnormalised energies ``v^T tanh(W q + U k [+ extra])``: ``(B, S)``.

        ``extra`` ``(B, S, A)`` is an additional term inside the tanh (location features).
        """
        hidden = keys_proj + self.query_proj(query).unsqueeze(1)  # (B, S, A)
        if extra is not None:
            hidden = hidden + extra
        return self.score(torch.tanh(hidden)).squeeze(-1)  # (B, S)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        keys_proj: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend from one decoder state over the keys.

        Args:
            query: ``(B, Dq)`` decoder state.
            keys: ``(B, S, Dk)`` encoder annotations.
            values: ``(B, S, Dv)``; defaults to ``keys``.
            mask: ``(B, S)`` bool, ``True`` = valid key. Masked keys get exactly zero weight; a
                row with no valid key gets zero weights and a zero context.
            keys_proj: ``(B, S, A)`` from :meth:`precompute`; computed here when ``None``.

        Returns:
            ``(context (B, Dv), weights (B, S))``; weights are float32 and sum to 1 over valid keys.
        """
        _check_inputs(self, query, keys, values, mask)
        if keys_proj is None:
            keys_proj = self.key_proj(keys)
        else:
            check_shape("keys_proj", keys_proj, (keys.shape[0], keys.shape[1], self.attn_dim))
        weights = masked_softmax(self.scores(query, keys_proj), mask)  # (B, S)
        context = weighted_sum(weights, keys if values is None else values)
        if is_recording():
            emit(self, weights, axes=("batch", "key"))
        return context, weights


def _check_inputs(
    module: nn.Module, query: Tensor, keys: Tensor, values: Tensor | None, mask: Tensor | None
) -> None:
    """Shared shape checks of the recurrent attentions (additive, location-aware)."""
    check_shape("keys", keys, (None, None, module.key_dim))
    batch, source_len = keys.shape[0], keys.shape[1]
    check_shape("query", query, (batch, module.query_dim))
    if values is not None:
        check_shape("values", values, (batch, source_len, None))
    if mask is not None:
        check_shape("mask", mask, (batch, source_len))
        if mask.dtype != torch.bool:
            raise ValueError(f"mask: expected dtype torch.bool (True = may attend), received {mask.dtype}")
