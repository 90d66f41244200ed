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

from multiattn.attention.compiled_energy import active_energy_kernel
from multiattn.decoding.grouping import QueryGroups
from multiattn.masks import check_shape
from multiattn.recording import emit, is_recording

__all__ = ["AdditiveAttention", "additive_energy", "masked_softmax", "weighted_sum"]

# Hidden-layer elements per chunk when no gradient is needed: ~1 MB of float32 stays in cache.
_CHUNK_ELEMENTS = 1 << 18


def additive_energy(
    keys_proj: Tensor, query_proj: Tensor, score_weight: Tensor, extra: Tensor | None = None
) -> Tensor:
    """The additive score ``v^T tanh(keys_proj + query_proj [+ extra])`` at every position.

    ``tanh(x) = 2 sigmoid(2x) - 1``, so the score is computed as ``2 v^T sigmoid(2x) - sum(v)``:
    on CPUs PyTorch's float32 ``tanh`` costs several times ``sigmoid`` per element, and the
    ``(B, S, A)`` hidden layer is the bulk of a recurrent decoder's step
    (``python scripts/additive_energy_speed.py`` measures both forms). Without autograd the rows
    are processed in chunks of ~1 MB, so the hidden layer never leaves the cache however many
    hypotheses a beam search scores at once. Same value as the tanh form up to float rounding.
    Within an active :class:`~multiattn.attention.compiled_energy.CompiledEnergy` block, calls
    without autograd and without ``extra`` run its compiled kernel instead (a speed-up only).

    Keys may be shared by groups of consecutive queries (beam search: the ``K`` hypotheses of
    one item, see :meth:`multiattn.decoding.ItemMemory.shared`): with ``G`` key rows and
    ``B = G * K`` queries, query ``b`` is scored against key row ``b // K``.

    Args:
        keys_proj: ``(G, S, A)`` projected keys (``U k + b``), ``G`` dividing ``B``.
        query_proj: ``(B, A)`` projected queries (``W q``).
        score_weight: ``(1, A)`` the weight ``v`` of the bias-free score layer.
        extra: ``(B, S, A)`` another term inside the tanh (location features), or ``None``.

    Returns:
        ``(B, S)`` unnormalised energies.
    """
    batch = query_proj.shape[0]
    groups, per_group = QueryGroups.of(batch, keys_proj.shape[0], what="keys_proj")
    length, attn_dim = keys_proj.shape[1], keys_proj.shape[2]
    queries = query_proj.view(groups, per_group, 1, attn_dim)  # (B, A) -> (G, K, 1, A)
    if extra is not None:
        extra = extra.view(groups, per_group, length, attn_dim)  # (B, S, A) -> (G, K, S, A)
    keys = keys_proj.unsqueeze(1)  # (G, 1, S, A)
    offset = score_weight.sum()
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (keys_proj, query_proj, score_weight, extra)
    )
    if needs_grad:
        hidden = keys + queries  # (G, K, S, A)
        if extra is not None:
            hidden = hidden + extra
        energy = (
            nn.functional.linear(torch.sigmoid(hidden * 2.0), score_weight) * 2.0 - offset
        )  # (G, K, S, 1)
        return energy.view(batch, length)  # (G, K, S, 1) -> (B, S)
    kernel = active_energy_kernel()  # a compiled kernel within its `with kernel.active():` block
    if kernel is not None and extra is None:
        energy = kernel(keys_proj, query_proj, score_weight)
        if energy is not None:
            return energy
    step = max(1, _CHUNK_ELEMENTS // max(1, per_group * length * attn_dim))  # groups per chunk
    parts = []
    for start in range(0, groups, step):
        stop = start + step
        hidden = torch.add(keys[start:stop], queries[start:stop])  # (g, K, S, A)
        if extra is not None:
            hidden.add_(extra[start:stop])
        parts.append(nn.functional.linear(hidden.mul_(2.0).sigmoid_(), score_weight))  # (g, K, S, 1)
    return torch.cat(parts).mul_(2.0).sub_(offset).view(batch, length)  # (G, K, S, 1) -> (B, S)


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
        return additive_energy(keys_proj, self.query_proj(query), self.score.weight, extra)  # (B, S)

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
