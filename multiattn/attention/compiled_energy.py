"""The additive score as one ``torch.compile`` kernel while decoding: a speed-up, nothing else.

:func:`multiattn.attention.additive.additive_energy` states the score
``v^T tanh(keys_proj + query_proj)`` (Bahdanau et al. 2015) and computes it eagerly. Within
``with kernel.active():`` of a :class:`CompiledEnergy`, its gradient-free calls without ``extra``
run :func:`fused_energy` compiled instead: ``torch.compile`` fuses the add, the sigmoid and the dot
product with ``v`` into one loop that never writes the ``(B, S, A)`` hidden layer. For a batched
captioning beam search that layer is ~40 % of the step (``python -m benchmarks.bench_captioning``
measures both paths). The price is a one-off compilation (seconds the first time, much less once
Inductor's on-disk cache holds it) and guard checks on every call, so it pays for bulk decoding,
not for one image. Values equal the eager path's up to float rounding.

The state is explicit: each :class:`CompiledEnergy` holds its compiled function (compiled on its
first call) and whether compiling failed, and the kernel in use is the one a ``with`` block made
active (a :class:`contextvars.ContextVar`, so the scope follows the code, threads included). A
model that offers compiled decoding owns one kernel (``CaptionModel.compiled_energy``). Where
compiling fails (no C++ compiler for Inductor's CPU backend, an unsupported device) a warning says
so once per kernel and the eager path is used.

Shape legend: ``G`` key rows, ``B = G * K`` queries, ``S`` keys, ``A`` attention dim.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch
from torch import Tensor

__all__ = ["CompiledEnergy", "active_energy_kernel", "fused_energy"]

_ACTIVE: ContextVar[CompiledEnergy | None] = ContextVar("multiattn_compiled_energy", default=None)


def fused_energy(keys_proj: Tensor, query_proj: Tensor, score_weight: Tensor) -> Tensor:
    """The eager path's score, written for one fused kernel (no ``(B, S, A)`` tensor is kept).

    ``keys_proj (G, S, A)``, ``query_proj (B, A)``, ``score_weight (1, A)`` -> ``(B, S)``.
    """
    groups, length, attn_dim = keys_proj.shape
    hidden = keys_proj.unsqueeze(1) + query_proj.view(groups, -1, 1, attn_dim)  # (G, K, S, A)
    energy = (torch.sigmoid(hidden * 2.0) * score_weight.view(attn_dim)).sum(-1) * 2.0 - score_weight.sum()
    return energy.view(-1, length)  # (G, K, S) -> (B, S)


def active_energy_kernel() -> CompiledEnergy | None:
    """The kernel of the innermost active ``with kernel.active():`` block, or ``None`` (eager)."""
    return _ACTIVE.get()


class CompiledEnergy:
    """:func:`fused_energy` compiled on first use; ``None`` from every call once compiling failed.

    Copies (``copy.deepcopy`` of a model that owns one) start afresh: the compiled function is a
    cache, not state.
    """

    def __init__(self) -> None:
        self.function: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None
        self.broken = False  # compiling failed once (no C++ compiler, ...): stay on the eager path

    def __deepcopy__(self, memo: dict) -> CompiledEnergy:
        return CompiledEnergy()

    def __getstate__(self) -> dict:
        return {"function": None, "broken": False}

    def _compile(self) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        return torch.compile(fused_energy, dynamic=True)

    @contextlib.contextmanager
    def active(self, enabled: bool = True) -> Iterator[None]:
        """Within the block, gradient-free ``additive_energy`` calls without ``extra`` use this
        kernel (``enabled=False``: the eager path, also inside an outer active block)."""
        token = _ACTIVE.set(self if enabled else None)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def __call__(self, keys_proj: Tensor, query_proj: Tensor, score_weight: Tensor) -> Tensor | None:
        """:func:`fused_energy` compiled, or ``None`` where compiling is unavailable."""
        if self.broken:
            return None
        if self.function is None:
            self.function = self._compile()
        try:
            return self.function(keys_proj, query_proj, score_weight)
        except Exception as error:  # any backend failure: the eager kernel computes the same thing
            self.broken = True
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(
                f"compiled attention scores are unavailable here ({first_line}); decoding uses the eager path",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
