"""Location-aware attention for speech decoders.

Chorowski, Bahdanau, Serdyuk, Cho and Bengio 2015, "Attention-Based Models for Speech
Recognition", eqs. (5)-(9): the previous step's weights ``alpha_{i-1}`` are convolved with
``conv_channels`` learned filters, ``f_i = F * alpha_{i-1}``, and the location features enter the
additive score ``e_{i,j} = w^T tanh(W s_{i-1} + V h_j + U f_{i,j} + b)``. Knowing where it looked
last lets the decoder move forward monotonically over similar-sounding frames.

With ``cumulative=True`` the convolution also sees the sum of all earlier steps' weights
(Shen et al. 2018, Tacotron 2), which discourages attending to a frame twice.

Shape legend: ``B`` batch, ``S`` number of encoder frames, ``Dq`` query dim, ``Dk`` key dim,
``Dv`` value dim, ``A`` attention dim, ``K`` kernel size, ``Cf`` conv channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multiattn.attention.additive import AdditiveAttention, _check_inputs, masked_softmax, weighted_sum
from multiattn.masks import check_shape
from multiattn.recording import emit, is_recording

__all__ = ["LocationAwareAttention"]


class LocationAwareAttention(nn.Module):
    """Additive attention plus convolutional features of the previous alignment.

    Weights are emitted (when recording) with axes ``("batch", "frame")``.

    Args:
        query_dim: ``Dq``, decoder state size.
        key_dim: ``Dk``, encoder frame feature size.
        attn_dim: ``A``, hidden size of the scoring MLP.
        conv_channels: ``Cf``, number of location filters (10 in the paper).
        kernel_size: ``K``, filter width in frames (odd, so the output keeps ``S`` frames; the
            paper uses 201 on TIMIT frames, 31 suits 4x-subsampled frames).
        cumulative: also convolve the running sum of earlier weights (pass ``cumulative_weights``).
    """

    def __init__(
        self,
        *,
        query_dim: int,
        key_dim: int,
        attn_dim: int,
        conv_channels: int = 10,
        kernel_size: int = 31,
        cumulative: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected a positive odd number, received {kernel_size}")
        self.query_dim = query_dim
        self.key_dim = key_dim
        self.attn_dim = attn_dim
        self.cumulative = cumulative
        self.additive = AdditiveAttention(query_dim=query_dim, key_dim=key_dim, attn_dim=attn_dim)
        in_channels = 2 if cumulative else 1
        self.location_conv = nn.Conv1d(
            in_channels, conv_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False
        )
        self.location_proj = nn.Linear(conv_channels, attn_dim, bias=False)

    def precompute(self, keys: Tensor) -> Tensor:
        """Project the keys once per utterance: ``(B, S, Dk) -> (B, S, A)``."""
        return self.additive.precompute(keys)

    def location_features(self, prev_weights: Tensor, cumulative_weights: Tensor | None = None) -> Tensor:
        """``U (F * alpha_{i-1})``: ``(B, S) -> (B, S, A)``."""
        channels = [prev_weights]
        if self.cumulative:
            channels.append(cumulative_weights)
        stacked = torch.stack(channels, dim=1).to(self.location_conv.weight.dtype)  # (B, 1 or 2, S)
        conv = self.location_conv(stacked)  # (B, Cf, S)
        return self.location_proj(conv.transpose(1, 2))  # (B, S, A)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        prev_weights: Tensor,
        values: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        cumulative_weights: Tensor | None = None,
        keys_proj: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One decoder step.

        Args:
            query: ``(B, Dq)`` decoder state ``s_{i-1}``.
            keys: ``(B, S, Dk)`` encoder frames.
            prev_weights: ``(B, S)`` weights of the previous step (zeros, or a one-hot on the first
                frame, before the first step).
            values: ``(B, S, Dv)``; defaults to ``keys``.
            mask: ``(B, S)`` bool, ``True`` = valid frame; masked frames get exactly zero weight.
            cumulative_weights: ``(B, S)`` sum of all earlier weights; required iff ``cumulative``.
            keys_proj: ``(B, S, A)`` from :meth:`precompute`.

        Returns:
            ``(context (B, Dv), weights (B, S))``, weights float32.
        """
        _check_inputs(self, query, keys, values, mask)
        batch, source_len = keys.shape[0], keys.shape[1]
        check_shape("prev_weights", prev_weights, (batch, source_len))
        if self.cumulative:
            if cumulative_weights is None:
                raise ValueError(
                    "cumulative_weights: required (B, S) tensor when cumulative=True, received None"
                )
            check_shape("cumulative_weights", cumulative_weights, (batch, source_len))
        elif cumulative_weights is not None:
            raise ValueError("cumulative_weights: given, but this module was built with cumulative=False")
        if keys_proj is None:
            keys_proj = self.additive.key_proj(keys)
        else:
            check_shape("keys_proj", keys_proj, (batch, source_len, self.attn_dim))
        location = self.location_features(prev_weights, cumulative_weights)  # (B, S, A)
        scores = self.additive.scores(query, keys_proj, extra=location)  # (B, S)
        weights = masked_softmax(scores, mask)  # (B, S)
        context = weighted_sum(weights, keys if values is None else values)
        if is_recording():
            emit(self, weights, axes=("batch", "frame"))
        return context, weights
