"""Soft spatial attention over a CNN feature grid, with the gating scalar.

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel and Bengio 2015, "Show, Attend and Tell:
Neural Image Caption Generation with Visual Attention". Section 4.2: at every word the decoder
state ``h_{t-1}`` scores each grid cell ``e_ti = f_att(a_i, h_{t-1})`` (an additive MLP),
``alpha_t = softmax(e_t)`` and the context is ``beta_t * sum_i alpha_ti a_i`` with the gating
scalar ``beta_t = sigmoid(f_beta(h_{t-1}))``. Section 4.2.1: the doubly stochastic regulariser
``lambda * sum_i (1 - sum_t alpha_ti)^2`` asks every cell to receive attention over the caption.

Shape legend: ``B`` batch, ``C`` feature channels (``feature_dim``), ``H, W`` grid, ``N = H*W``
cells, ``Dh`` decoder hidden size, ``A`` attention dim, ``T`` decoding steps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from multiattn.attention.additive import additive_energy, masked_softmax
from multiattn.masks import check_lengths, check_shape, lengths_to_mask
from multiattn.recording import emit, is_recording

__all__ = ["SoftSpatialAttention", "SpatialAttentionOutput", "doubly_stochastic_penalty", "flatten_grid"]


class SpatialAttentionOutput(NamedTuple):
    """Result of one step of :class:`SoftSpatialAttention`.

    Attributes:
        context: ``(B, C)`` gated context ``beta * sum_i alpha_i a_i``.
        weights: ``(B, H, W)`` attention over the grid (float32, sums to 1 over valid cells).
        gate: ``(B, 1)`` the gating scalar ``beta`` (ones when the module has no gate).
    """

    context: Tensor
    weights: Tensor
    gate: Tensor


def flatten_grid(features: Tensor, grid_hw: tuple[int, int] | None = None) -> tuple[Tensor, tuple[int, int]]:
    """``(B, C, H, W)`` or ``(B, H*W, C)`` with ``grid_hw`` -> ``((B, N, C), (H, W))``."""
    if features.dim() == 4:
        height, width = features.shape[2], features.shape[3]
        if grid_hw is not None and tuple(grid_hw) != (height, width):
            raise ValueError(
                f"grid_hw: expected {(height, width)} for features {tuple(features.shape)}, received {grid_hw}"
            )
        return features.flatten(2).transpose(1, 2), (height, width)  # (B, C, N) -> (B, N, C)
    if features.dim() == 3:
        if grid_hw is None:
            raise ValueError(
                f"grid_hw: required for flattened features of shape {tuple(features.shape)} (B, H*W, C)"
            )
        height, width = int(grid_hw[0]), int(grid_hw[1])
        check_shape("features", features, (None, height * width, None))
        return features, (height, width)
    raise ValueError(
        f"features: expected shape (B, C, H, W) or (B, H*W, C), received {tuple(features.shape)}"
    )


class SoftSpatialAttention(nn.Module):
    """Deterministic "soft" attention of Show, Attend and Tell over a feature grid.

    Weights are emitted (when recording) as ``(B, H, W)`` with axes
    ``("batch", "grid_h", "grid_w")`` and meta ``grid=(H, W)``.

    Args:
        feature_dim: ``C``, channels of each grid cell's annotation vector.
        hidden_dim: ``Dh``, decoder hidden size.
        attn_dim: ``A``, hidden size of the scoring MLP ``f_att``.
        gate: multiply the context by ``beta = sigmoid(f_beta(h))`` (section 4.2.1); the paper
            found it makes the attention weights put more emphasis on the objects.
    """

    def __init__(self, *, feature_dim: int, hidden_dim: int, attn_dim: int, gate: bool = True) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.hidden_dim = hidden_dim
        self.attn_dim = attn_dim
        self.feature_proj = nn.Linear(feature_dim, attn_dim, bias=True)
        self.hidden_proj = nn.Linear(hidden_dim, attn_dim, bias=False)
        self.score = nn.Linear(attn_dim, 1, bias=False)
        self.gate_proj = nn.Linear(hidden_dim, 1) if gate else None

    def precompute(self, features: Tensor, *, grid_hw: tuple[int, int] | None = None) -> Tensor:
        """Project the grid once per image (the decoder calls :meth:`forward` once per word).

        Args:
            features: ``(B, C, H, W)`` or ``(B, H*W, C)`` (then ``grid_hw`` is required).

        Returns:
            ``(B, N, A)``, to pass as ``features_proj``.
        """
        flat, _ = flatten_grid(features, grid_hw)
        check_shape("features", flat, (None, None, self.feature_dim))
        return self.feature_proj(flat)

    def forward(
        self,
        features: Tensor,
        hidden: Tensor,
        *,
        mask: Tensor | None = None,
        grid_hw: tuple[int, int] | None = None,
        features_proj: Tensor | None = None,
        hidden_proj: Tensor | None = None,
        gate_logit: Tensor | None = None,
    ) -> SpatialAttentionOutput:
        """One decoding step.

        The grid may be shared by groups of consecutive queries (beam search: the ``K``
        hypotheses of one image, :meth:`multiattn.decoding.ItemMemory.shared`): with ``G`` grids
        and ``B = G * K`` hidden states, state ``b`` attends over grid ``b // K``, and each grid
        is read once per group rather than once per hypothesis.

        Args:
            features: ``(G, C, H, W)``, or ``(G, H*W, C)`` with ``grid_hw=(H, W)``; ``G`` divides
                ``B`` (usually ``G = B``).
            hidden: ``(B, Dh)`` previous decoder state ``h_{t-1}``.
            mask: ``(G, H*W)`` or ``(G, H, W)`` bool, ``True`` = valid cell (e.g. images padded to a
                common size); masked cells get exactly zero weight.
            grid_hw: ``(H, W)``, needed for flattened features.
            features_proj: ``(G, N, A)`` from :meth:`precompute`.
            hidden_proj: ``(B, A)`` the query projection ``hidden_proj(hidden)``, when the caller
                computed it (a decoder can fold it into one matmul with the other projections of
                the same state, e.g. the LSTM's ``W_hh h``); ``None`` computes it here.
            gate_logit: ``(B, 1)`` ``gate_proj(hidden)`` computed by the caller, likewise (only
                with ``gate=True``).

        Returns:
            :class:`SpatialAttentionOutput` ``(context (B, C), weights (B, H, W), gate (B, 1))``.
        """
        flat, (height, width) = flatten_grid(features, grid_hw)  # (G, N, C)
        groups, cells = flat.shape[0], flat.shape[1]
        check_shape("features", flat, (groups, cells, self.feature_dim))
        batch = hidden.shape[0]
        check_shape("hidden", hidden, (None, self.hidden_dim))
        if groups == 0 or batch % groups:
            raise ValueError(
                f"features: {groups} grids do not divide the {batch} hidden states into equal groups"
            )
        per_group = batch // groups
        if mask is not None:
            if mask.dim() == 3:
                check_shape("mask", mask, (groups, height, width))
                mask = mask.flatten(1)  # (G, H, W) -> (G, N)
            check_shape("mask", mask, (groups, cells))
            mask = mask.repeat_interleave(per_group, dim=0) if per_group > 1 else mask  # (B, N)
        if features_proj is None:
            features_proj = self.feature_proj(flat)
        else:
            check_shape("features_proj", features_proj, (groups, cells, self.attn_dim))
        if hidden_proj is None:
            hidden_proj = self.hidden_proj(hidden)
        else:
            check_shape("hidden_proj", hidden_proj, (batch, self.attn_dim))
        energy = additive_energy(features_proj, hidden_proj, self.score.weight)  # (B, N)
        weights = masked_softmax(energy, mask)  # (B, N)
        grouped = weights.to(flat.dtype).view(groups, per_group, cells)  # (B, N) -> (G, K, N)
        context = torch.bmm(grouped, flat).view(batch, self.feature_dim)  # (G, K, C) -> (B, C)
        if self.gate_proj is not None:
            if gate_logit is None:
                gate_logit = self.gate_proj(hidden)
            else:
                check_shape("gate_logit", gate_logit, (batch, 1))
            gate = torch.sigmoid(gate_logit)  # (B, 1)
            context = gate.to(context.dtype) * context
        elif gate_logit is not None:
            raise ValueError("gate_logit: given, but the module was built with gate=False")
        else:
            gate = hidden.new_ones(batch, 1)
        grid_weights = weights.view(batch, height, width)  # (B, N) -> (B, H, W)
        if is_recording():
            emit(self, grid_weights, axes=("batch", "grid_h", "grid_w"), grid=(height, width))
        return SpatialAttentionOutput(context, grid_weights, gate)


def doubly_stochastic_penalty(
    weights: Tensor, lengths: Tensor | None = None, *, mask: Tensor | None = None
) -> Tensor:
    """The doubly stochastic attention regulariser of Show, Attend and Tell (eq. 14, without lambda).

    ``mean_b sum_i (1 - sum_{t < lengths[b]} alpha_{b,t,i})^2``: padded decoding steps (after the
    caption's end) contribute no attention, so a short caption is not pushed to spread its few
    steps over the whole grid any more than the paper's formula asks.

    Args:
        weights: ``(B, T, N)`` or ``(B, T, H, W)`` per-step attention.
        lengths: ``(B,)`` number of valid steps per item; ``None`` means all ``T`` are valid.
        mask: ``(B, N)`` or ``(B, H, W)`` bool valid cells; masked cells (image padding) are
            left out of the sum. ``None`` counts every cell.

    Returns:
        A scalar float32 tensor (multiply by lambda in the loss).
    """
    if weights.dim() == 4:
        weights = weights.flatten(2)  # (B, T, H, W) -> (B, T, N)
    if weights.dim() != 3:
        raise ValueError(
            f"weights: expected shape (B, T, N) or (B, T, H, W), received {tuple(weights.shape)}"
        )
    batch, steps, cells = weights.shape
    weights = weights.float()
    if lengths is not None:
        check_lengths(lengths, batch, steps)
        step_mask = lengths_to_mask(lengths, steps)  # (B, T)
        weights = weights * step_mask.unsqueeze(-1)
    per_cell = (1.0 - weights.sum(dim=1)) ** 2  # (B, N)
    if mask is not None:
        if mask.dim() == 3:
            mask = mask.flatten(1)  # (B, H, W) -> (B, N)
        check_shape("mask", mask, (batch, cells))
        per_cell = per_cell * mask
    return per_cell.sum(dim=1).mean()
