"""The teacher-forcing loop of step-by-step (recurrent) decoders.

A recurrent decoder (an LSTM with attention: Show, Attend and Tell; location-aware speech
decoders) is trained by feeding the reference token of each step and collecting its outputs
(Williams and Zipser 1989). Decoders write one ``advance(token, state)`` for one step, which the
searches use too; this loop runs it over a whole target.

Shape legend: ``B`` batch, ``T`` target steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["teacher_force"]


def teacher_force(
    advance: Callable[[Tensor, Any], tuple[tuple[Tensor, ...], Any]], tokens: Tensor, state: Any
) -> tuple[Tensor, ...]:
    """Run ``advance`` over every step of ``tokens (B, T)`` and stack each output along ``dim=1``.

    Args:
        advance: ``(token (B,), state) -> ((output (B, ...), ...), state)``, one decoder step.
        tokens: ``(B, T)`` input tokens (bos first). Padded steps come after the valid ones, so
            their outputs are computed and left to the loss to mask.
        state: the decoder's initial state.

    Returns:
        one ``(B, T, ...)`` tensor per output of ``advance``.
    """
    steps: list[tuple[Tensor, ...]] = []
    for index in range(tokens.shape[1]):
        outputs, state = advance(tokens[:, index], state)
        steps.append(outputs)
    return tuple(torch.stack(column, dim=1) for column in zip(*steps))
