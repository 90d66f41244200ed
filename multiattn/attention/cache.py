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


_MIN_CAPACITY = 16  # key positions a self-attention cache holds before it first grows


@dataclass
class KVCache:
    """Projected keys and values of one attention module.

    A self-attention cache grows by appending one step's keys at a time. Without autograd it keeps
    them in buffers with spare capacity along the key axis (doubled when full), so an append
    writes only the new positions instead of copying the whole cache (``torch.cat`` every step
    is quadratic in the length), and a beam-search reorder gathers the rows into a second pair of
    buffers that are then swapped, so a search allocates no new cache memory after its first
    steps. ``key`` and ``value`` are views of the filled part: read them (or the pair ``append``
    returns) before the next ``reorder``, which recycles the buffers behind the previous views.

    Attributes:
        key: ``(B, nh, S, hd)`` or ``None`` while empty.
        value: ``(B, nh, S, hd)`` or ``None`` while empty.
        static: ``True`` for cross-attention: filled once from the memory, then only read.
    """

    key: Tensor | None = None
    value: Tensor | None = None
    static: bool = False
    # (key, value) buffers (rows, nh, capacity, hd) behind ``key`` / ``value``, and the spare pair
    # a reorder gathers into; ``None`` when the cache holds plain tensors (static, or autograd).
    _buffers: tuple[Tensor, Tensor] | None = field(default=None, repr=False)
    _spare: tuple[Tensor, Tensor] | None = field(default=None, repr=False)

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
        if self.key is not None and key.shape[0] != self.key.shape[0]:
            raise ValueError(
                f"KVCache: expected batch {self.key.shape[0]}, received keys of shape {tuple(key.shape)}"
            )
        tracked = torch.is_grad_enabled() and (key.requires_grad or value.requires_grad)
        if self.static or tracked or (self.key is not None and self._buffers is None):
            # Plain tensors: a static cache is set once; autograd must see out-of-place ops.
            if self.key is None or self.value is None:
                self.key, self.value = key, value
            else:
                self.key = torch.cat([self.key, key], dim=2)  # (B, nh, S + T, hd)
                self.value = torch.cat([self.value, value], dim=2)  # (B, nh, S + T, hd)
            return self.key, self.value
        rows, old, new = key.shape[0], self.length, key.shape[2]
        if self._buffers is None or old + new > self._buffers[0].shape[2]:
            self._grow(key, value, max(_MIN_CAPACITY, 2 * old, old + new))
        key_buffer, value_buffer = self._buffers
        key_buffer[:rows, :, old : old + new] = key
        value_buffer[:rows, :, old : old + new] = value
        self.key, self.value = key_buffer[:rows, :, : old + new], value_buffer[:rows, :, : old + new]
        return self.key, self.value

    def _grow(self, key: Tensor, value: Tensor, capacity: int) -> None:
        """New buffers of ``capacity`` positions holding the cached keys/values (spares dropped)."""
        rows, heads, _, key_dim = key.shape
        buffers = (
            key.new_empty(rows, heads, capacity, key_dim),
            value.new_empty(rows, heads, capacity, value.shape[3]),
        )
        if self.key is not None and self.value is not None:
            buffers[0][:, :, : self.length] = self.key
            buffers[1][:, :, : self.length] = self.value
        self._buffers, self._spare = buffers, None

    def reorder(self, indices: Tensor) -> None:
        """Keep batch rows ``indices`` (``(B',)`` long), in that order (beam search)."""
        if self.key is None or self.value is None:
            return
        if self._buffers is None:
            self.key = self.key.index_select(0, indices)
            self.value = self.value.index_select(0, indices)
            return
        rows, length = indices.shape[0], self.length
        key_buffer, value_buffer = self._buffers
        spare = self._spare
        if spare is None or spare[0].shape[0] < rows:
            shape = (max(rows, key_buffer.shape[0]), *key_buffer.shape[1:])
            spare = (key_buffer.new_empty(shape), value_buffer.new_empty((shape[0], *value_buffer.shape[1:])))
        key_out, value_out = spare[0][:rows, :, :length], spare[1][:rows, :, :length]
        torch.index_select(self.key, 0, indices, out=key_out)
        torch.index_select(self.value, 0, indices, out=value_out)
        self._buffers, self._spare = spare, self._buffers
        self.key, self.value = key_out, value_out


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
