"""Attention mechanisms of the shared core.

``ATTENTION`` maps the names a YAML config may use to the dot-product family modules, which share
one constructor and forward (see :class:`MultiHeadAttention`); :func:`build_attention` builds one
by name.
"""

from __future__ import annotations

from torch import nn

from multiattn.attention.additive import AdditiveAttention
from multiattn.attention.cache import KVCache, LinearAttentionState
from multiattn.attention.compiled_energy import CompiledEnergy
from multiattn.attention.linear import LinearAttention
from multiattn.attention.location import LocationAwareAttention
from multiattn.attention.multihead import MultiHeadAttention
from multiattn.attention.spatial import (
    SoftSpatialAttention,
    SpatialAttentionOutput,
    attention_entropy,
    attention_region_nll,
    doubly_stochastic_penalty,
    step_contexts,
)

__all__ = [
    "AdditiveAttention",
    "LocationAwareAttention",
    "SoftSpatialAttention",
    "SpatialAttentionOutput",
    "CompiledEnergy",
    "attention_entropy",
    "attention_region_nll",
    "doubly_stochastic_penalty",
    "step_contexts",
    "ATTENTION",
    "build_attention",
    "KVCache",
    "LinearAttentionState",
    "LinearAttention",
    "MultiHeadAttention",
]

ATTENTION: dict[str, type[nn.Module]] = {"softmax": MultiHeadAttention, "linear": LinearAttention}


def build_attention(name: str, **kwargs) -> nn.Module:
    """Build the attention module registered as ``name`` (``"softmax"`` or ``"linear"``).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
    """
    if name not in ATTENTION:
        raise ValueError(f"unknown attention {name!r}; valid names: {', '.join(sorted(ATTENTION))}")
    return ATTENTION[name](**kwargs)
