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
from multiattn.decoding.grouping import QueryGroups
from multiattn.masks import check_lengths, check_shape, lengths_to_mask
from multiattn.recording import emit, is_recording

__all__ = [
    "SoftSpatialAttention",
    "SpatialAttentionOutput",
    "attention_entropy",
    "attention_region_nll",
    "doubly_stochastic_penalty",
    "flatten_grid",
    "step_contexts",
]


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
        query_bias: Tensor | None = None,
    ) -> SpatialAttentionOutput:
        """One decoding step: ``e_i = f_att(a_i, h)``, ``alpha = softmax(e)``, context ``beta sum_i alpha_i a_i``.

        Args:
            features: ``(G, C, H, W)``, or ``(G, H*W, C)`` with ``grid_hw=(H, W)``; usually
                ``G = B``. In beam search ``G`` divides ``B`` and grid ``b // K`` serves state
                ``b`` (:class:`multiattn.decoding.grouping.QueryGroups`: the ``K`` hypotheses of
                one image read its grid once).
            hidden: ``(B, Dh)`` previous decoder state ``h_{t-1}``.
            mask: ``(G, H*W)`` or ``(G, H, W)`` bool, ``True`` = valid cell (e.g. images padded to a
                common size); masked cells get exactly zero weight.
            grid_hw: ``(H, W)``, needed for flattened features.
            features_proj: ``(G, N, A)`` from :meth:`precompute`.
            query_bias: ``(B, A)`` added to ``hidden_proj(h)``: a second input to the query (the
                captioning decoder's previous word); the gate still reads ``h`` alone.

        Returns:
            :class:`SpatialAttentionOutput` ``(context (B, C), weights (B, H, W), gate (B, 1))``.
        """
        check_shape("hidden", hidden, (None, self.hidden_dim))
        gate_logit = None if self.gate_proj is None else self.gate_proj(hidden)  # (B, 1)
        query = self.hidden_proj(hidden)  # (B, A)
        if query_bias is not None:
            check_shape("query_bias", query_bias, (hidden.shape[0], self.attn_dim))
            query = query + query_bias
        return self.attend(
            features,
            query,
            gate_logit,
            mask=mask,
            grid_hw=grid_hw,
            features_proj=features_proj,
        )

    def attend(
        self,
        features: Tensor,
        query_proj: Tensor,
        gate_logit: Tensor | None,
        *,
        mask: Tensor | None = None,
        grid_hw: tuple[int, int] | None = None,
        features_proj: Tensor | None = None,
    ) -> SpatialAttentionOutput:
        """:meth:`forward` from the projections of ``h_{t-1}`` instead of ``h_{t-1}`` itself.

        A decoder may compute ``hidden_proj(h)`` and ``gate_proj(h)`` folded into one matmul with
        its own products of ``h`` (:mod:`multiattn.tasks.captioning.fused_step`).

        Args:
            features, mask, grid_hw, features_proj: as in :meth:`forward`.
            query_proj: ``(B, A)`` ``hidden_proj(h)``.
            gate_logit: ``(B, 1)`` ``gate_proj(h)``; ``None`` exactly when the module has no gate.
        """
        flat, (height, width) = flatten_grid(features, grid_hw)  # (G, N, C)
        cells, batch = flat.shape[1], query_proj.shape[0]
        check_shape("features", flat, (None, cells, self.feature_dim))
        check_shape("hidden_proj", query_proj, (None, self.attn_dim))
        groups = QueryGroups.of(batch, flat.shape[0], what="features")
        if mask is not None:
            mask = groups.expand(_check_cell_mask(mask, groups.groups, (height, width)))  # (B, N)
        if features_proj is None:
            features_proj = self.feature_proj(flat)
        else:
            check_shape("features_proj", features_proj, (groups.groups, cells, self.attn_dim))
        energy = additive_energy(features_proj, query_proj, self.score.weight)  # (B, N)
        weights = masked_softmax(energy, mask)  # (B, N)
        context = groups.weighted_sum(weights, flat)  # (B, C)
        if (gate_logit is None) != (self.gate_proj is None):
            built = "gate=False: expected None" if self.gate_proj is None else "gate=True: expected (B, 1)"
            raise ValueError(f"gate_logit: the module was built with {built}")
        if gate_logit is None:
            gate = query_proj.new_ones(batch, 1)
        else:
            check_shape("gate_logit", gate_logit, (batch, 1))
            gate = torch.sigmoid(gate_logit)  # (B, 1)
            context = gate.to(context.dtype) * context
        grid_weights = weights.view(batch, height, width)  # (B, N) -> (B, H, W)
        if is_recording():
            emit(self, grid_weights, axes=("batch", "grid_h", "grid_w"), grid=(height, width))
        return SpatialAttentionOutput(context, grid_weights, gate)


def _check_cell_mask(mask: Tensor, groups: int, grid_hw: tuple[int, int]) -> Tensor:
    """``(G, H, W)`` or ``(G, N)`` bool -> ``(G, N)``, checked."""
    if mask.dim() == 3:
        check_shape("mask", mask, (groups, *grid_hw))
        mask = mask.flatten(1)  # (G, H, W) -> (G, N)
    check_shape("mask", mask, (groups, grid_hw[0] * grid_hw[1]))
    return mask


def _per_step(weights: Tensor) -> Tensor:
    """Per-step attention as ``(B, T, N)``: ``(B, T, H, W)`` grids are flattened."""
    if weights.dim() == 4:
        weights = weights.flatten(2)
    if weights.dim() != 3:
        raise ValueError(
            f"weights: expected shape (B, T, N) or (B, T, H, W), received {tuple(weights.shape)}"
        )
    return weights


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
    weights = _per_step(weights)
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


def attention_entropy(weights: Tensor, lengths: Tensor | None = None, steps: Tensor | None = None) -> Tensor:
    """Mean entropy (nats) of the per-step attention distributions, a sharpening penalty.

    ``mean over valid (b, t) of -sum_i alpha_{b,t,i} log alpha_{b,t,i}``: 0 when every step puts
    all its weight on one cell, ``log N`` when it spreads it evenly. Added to a loss with a positive
    weight, it asks each word to look at fewer cells (no box is needed); padded decoding steps
    (``t >= lengths[b]``) are left out. Cells with zero weight (masked) contribute zero.

    Args:
        weights: ``(B, T, N)`` or ``(B, T, H, W)`` per-step attention (each step sums to 1).
        lengths: ``(B,)`` number of valid steps per item; ``None`` means all ``T`` are valid.
        steps: ``(B, T)`` bool, the steps to sharpen (for example those that emit a word naming an
            object); ``None`` means every valid step.

    Returns:
        A scalar float32 tensor (0 when no step is selected).
    """
    weights = _per_step(weights)
    batch, count, _ = weights.shape
    weights = weights.float()
    # The clamp keeps 0 * log 0 = 0 and the gradient finite at cells with zero weight.
    per_step = -(weights * weights.clamp_min(1e-12).log()).sum(dim=-1)  # (B, T)
    if lengths is None and steps is None:
        return per_step.mean()
    selected = torch.ones_like(per_step, dtype=torch.bool)
    if lengths is not None:
        check_lengths(lengths, batch, count)
        selected = selected & lengths_to_mask(lengths, count)
    if steps is not None:
        check_shape("steps", steps, (batch, count))
        selected = selected & steps.bool()
    selected = selected.to(per_step.dtype)
    return (per_step * selected).sum() / selected.sum().clamp_min(1.0)


def attention_region_nll(weights: Tensor, regions: Tensor, steps: Tensor) -> Tensor:
    """Attention supervision: mean ``-log(sum_i alpha_{b,t,i} r_{b,t,i})`` over the selected steps.

    ``r`` says how much of each cell belongs to the region a step should look at (the box of the
    object its word names: :func:`multiattn.metrics.captioning.box_cell_coverage`), so the term is
    the negative log of the attention mass inside that region; 0 when all of it is there. It needs
    boxes, which a captioning dataset rarely has: an option for comparison, not a default.

    Args:
        weights: ``(B, T, H, W)`` or ``(B, T, N)`` per-step attention (each step sums to 1).
        regions: the same shape, each cell's share in ``[0, 1]`` of the step's region.
        steps: ``(B, T)`` bool, the supervised steps (those whose word names one object).

    Returns:
        A scalar float32 tensor (0 when no step is selected).
    """
    weights = _per_step(weights)
    batch, count, cells = weights.shape
    regions = regions.reshape(batch, count, -1)
    check_shape("regions", regions, (batch, count, cells))
    check_shape("steps", steps, (batch, count))
    inside = (weights.float() * regions.float()).sum(dim=-1)  # (B, T)
    selected = steps.bool()
    if not bool(selected.any()):
        return weights.float().sum() * 0.0  # keeps the graph (and DDP's unused-parameter check) intact
    return -inside[selected].clamp_min(1e-6).log().mean()


def step_contexts(weights: Tensor, features: Tensor) -> Tensor:
    """The annotation each step attended to, ``sum_i alpha_{b,t,i} a_{b,i}``, for every step at once.

    Ungated (no ``beta``): what the map selects from the grid, whatever the decoder then takes of
    it. A term on these (a word predicted from its step's context alone) reaches the map and the
    encoder without boxes.

    Args:
        weights: ``(B, T, H, W)`` or ``(B, T, N)`` per-step attention.
        features: ``(B, C, H, W)`` the grid the weights are over (``N = H * W``).

    Returns:
        ``(B, T, C)``.
    """
    weights = _per_step(weights)
    flat, _ = flatten_grid(features)  # (B, N, C)
    check_shape("weights", weights, (flat.shape[0], None, flat.shape[1]))
    return torch.bmm(weights.to(flat.dtype), flat)  # (B, T, N) x (B, N, C)
