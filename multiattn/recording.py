"""Attention maps on demand.

Attention modules compute weights only when somebody is recording: with no recorder active
they take their fastest path (``F.scaled_dot_product_attention``, fused kernels) and compute
no weights at all. Inside :func:`record_attention` they compute the weights explicitly and hand
them to the recorder with a description of what each axis means.

Example::

    with record_attention(model) as rec:
        model(x)
    rec["decoder.layers.0.cross_attn"][0].weights   # (B, nh, T, S)
    rec["decoder.layers.0.cross_attn"][0].axes      # ("batch", "head", "query", "key")

Axis names used across the project: ``batch``, ``head``, ``query`` (output tokens / steps),
``key`` (input tokens), ``frame`` (audio frames after subsampling), ``grid_h`` / ``grid_w``
(a spatial feature grid), ``corner`` / ``xy`` (spatial transformer regions).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AttentionMap", "AttentionRecorder", "record_attention", "is_recording", "emit"]


@dataclass
class AttentionMap:
    """One recorded call of one attention module.

    Attributes:
        name: the module's qualified name inside the model given to :func:`record_attention`
            (its class name when it is not part of that model).
        weights: detached attention weights (or region parameters for spatial transformers).
        axes: one name per dimension of ``weights``.
        meta: anything else that says how to read the map (e.g. ``{"grid": (H, W)}``).
    """

    name: str
    weights: Tensor
    axes: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.axes) != self.weights.dim():
            raise ValueError(
                f"AttentionMap {self.name}: {len(self.axes)} axis names {self.axes} for a "
                f"{self.weights.dim()}-d tensor of shape {tuple(self.weights.shape)}"
            )


class AttentionRecorder:
    """Collects :class:`AttentionMap` s keyed by module name, one entry per call, in call order."""

    def __init__(self, model: nn.Module | None = None, *, detach: bool = True, to_cpu: bool = False) -> None:
        self.detach = detach
        self.to_cpu = to_cpu
        self.maps: dict[str, list[AttentionMap]] = {}
        self._names: dict[int, str] = {}
        if model is not None:
            self._names = {id(m): name for name, m in model.named_modules()}

    def name_of(self, module: nn.Module) -> str:
        return self._names.get(id(module), type(module).__name__)

    def add(self, module: nn.Module, weights: Tensor, axes: tuple[str, ...], meta: dict[str, Any]) -> None:
        if self.detach:
            weights = weights.detach()
        if self.to_cpu:
            weights = weights.cpu()
        name = self.name_of(module)
        self.maps.setdefault(name, []).append(AttentionMap(name, weights, tuple(axes), dict(meta)))

    def __getitem__(self, name: str) -> list[AttentionMap]:
        return self.maps[name]

    def __contains__(self, name: str) -> bool:
        return name in self.maps

    def __iter__(self) -> Iterator[str]:
        return iter(self.maps)

    def names(self) -> list[str]:
        return list(self.maps)

    def stacked(self, name: str, dim: int = 1) -> Tensor:
        """Stack the weights of every call of ``name`` along a new dimension ``dim``.

        Useful for step-by-step decoders: per-step ``(B, S)`` maps become ``(B, steps, S)``.
        """
        return torch.stack([m.weights for m in self.maps[name]], dim=dim)

    def clear(self) -> None:
        self.maps.clear()


_ACTIVE: contextvars.ContextVar[tuple[AttentionRecorder, ...]] = contextvars.ContextVar(
    "multiattn_recorders", default=()
)


def is_recording() -> bool:
    """``True`` inside :func:`record_attention`: modules must then compute explicit weights."""
    return bool(_ACTIVE.get())


def emit(module: nn.Module, weights: Tensor, axes: tuple[str, ...], **meta: Any) -> None:
    """Hand ``weights`` to every active recorder. A no-op when nothing records."""
    for recorder in _ACTIVE.get():
        recorder.add(module, weights, axes, meta)


@contextlib.contextmanager
def record_attention(
    model: nn.Module | None = None, *, detach: bool = True, to_cpu: bool = False
) -> Iterator[AttentionRecorder]:
    """Record every attention module's weights during the enclosed forward passes.

    Args:
        model: names modules by their qualified name in this model (``named_modules``).
        detach: store detached weights (default); ``False`` keeps the graph (e.g. for a penalty).
        to_cpu: move recorded weights to the CPU as they arrive (saves accelerator memory).
    """
    recorder = AttentionRecorder(model, detach=detach, to_cpu=to_cpu)
    token = _ACTIVE.set(_ACTIVE.get() + (recorder,))
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)
