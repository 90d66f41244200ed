"""Caches for incremental (step-by-step) decoding with dot-product and linear attention.

A decoder that emits one token at a time recomputes nothing for earlier steps: self-attention
appends each step's keys and values to a :class:`KVCache`; cross-attention projects the memory
once into a *static* :class:`KVCache`; linear attention (Katharopoulos et al. 2020, "Transformers
are RNNs") keeps a constant-size recurrent state in a :class:`LinearAttentionState`.

Every cache has ``reorder(indices)`` so that beam search can select, per step, which hypotheses
survive (``index_select`` on the batch dimension).

Shape legend: ``B`` batch (hypotheses), ``nh`` heads, ``S`` cached key length, ``hd`` head dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["KVCache", "LinearAttentionState"]


@dataclass
class KVCache:
    """Projected keys and values of one attention module.

    Attributes:
        key: ``(B, nh, S, hd)`` or ``None`` while empty.
        value: ``(B, nh, S, hd)`` or ``None`` while empty.
        static: ``True`` for cross-attention: filled once from the memory, then only read.
    """

    key: Tensor | None = None
    value: Tensor | None = None
    static: bool = False

    @property
    def length(self) -> int:
        """Number of cached key positions ``S`` (0 when empty)."""
        return 0 if self.key is None else self.key.shape[2]

    @property
    def filled(self) -> bool:
        return self.key is not None

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``(B, nh, T, hd)`` keys/values (or set them, for a static cache); return all of them."""
        if self.static and self.filled:
            raise ValueError("KVCache: a static (cross-attention) cache is filled once and then only read")
        if self.key is None or self.value is None:
            self.key, self.value = key, value
        else:
            if key.shape[0] != self.key.shape[0]:
                raise ValueError(
                    f"KVCache: expected batch {self.key.shape[0]}, received keys of shape {tuple(key.shape)}"
                )
            self.key = torch.cat([self.key, key], dim=2)  # (B, nh, S + T, hd)
            self.value = torch.cat([self.value, value], dim=2)  # (B, nh, S + T, hd)
        return self.key, self.value

    def reorder(self, indices: Tensor) -> None:
        """Keep batch rows ``indices`` (``(B',)`` long), in that order (beam search)."""
        if self.key is not None and self.value is not None:
            self.key = self.key.index_select(0, indices)
            self.value = self.value.index_select(0, indices)


@dataclass
class LinearAttentionState:
    """Recurrent state of causal linear attention: ``sum_s phi(k_s) v_s^T`` and ``sum_s phi(k_s)``.

    The state has constant size whatever the number of steps, which is what makes linear
    attention an RNN at decoding time. Kept in float32 because it is a running sum.

    Attributes:
        kv: ``(B, nh, hd, hd)`` running sum of ``phi(k) v^T`` or ``None`` while empty.
        k_sum: ``(B, nh, hd)`` running sum of ``phi(k)`` or ``None`` while empty.
        length: number of keys folded into the state.
        key_features / values: ``(B, nh, S, hd)`` history of ``phi(k)`` and ``v``, kept only while
            attention is being recorded (the explicit weights need every key); ``None`` otherwise.
    """

    kv: Tensor | None = None
    k_sum: Tensor | None = None
    length: int = 0
    key_features: Tensor | None = None
    values: Tensor | None = None
    history_length: int = field(default=0)

    @property
    def filled(self) -> bool:
        return self.kv is not None

    def reorder(self, indices: Tensor) -> None:
        """Keep batch rows ``indices`` (``(B',)`` long), in that order (beam search)."""
        for name in ("kv", "k_sum", "key_features", "values"):
            tensor = getattr(self, name)
            if tensor is not None:
                setattr(self, name, tensor.index_select(0, indices))
