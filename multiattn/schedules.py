"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

The Transformer recipe (Vaswani et al. 2017: warm up, then decay) with the cosine decay of
Loshchilov and Hutter (2017, SGDR without restarts). ``torch.optim.lr_scheduler`` has the pieces
(``LinearLR``, ``CosineAnnealingLR``) but its floor ``eta_min`` is one absolute rate for every
parameter group, while the tasks train groups at different rates (a pretrained encoder at a tenth):
here the floor is a fraction of each group's own rate, written as one ``LambdaLR`` factor.
"""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine", "warmup_cosine_factor"]


def warmup_cosine_factor(step: int, *, warmup: int, total: int, floor: float) -> float:
    """The factor applied to each group's rate at optimiser ``step``.

    ``(step + 1) / warmup`` while ``step < warmup``; then ``floor + (1 - floor) (1 + cos(pi p)) / 2``
    with ``p = (step - warmup) / (total - warmup)`` clamped to ``[0, 1]``: 1 at the end of the
    warm-up, ``floor`` from ``total`` on.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    floor: float,
    max_warmup_fraction: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine schedule over ``total_steps`` optimiser steps (step it every step).

    Args:
        optimizer: its groups' ``lr`` are the peak rates.
        total_steps: steps of the run.
        warmup_steps: linear warm-up steps, capped at ``max_warmup_fraction`` of the run (at least 1
            when ``warmup_steps > 0``), so a short run still decays.
        floor: the final rate as a fraction of each group's peak rate.
        max_warmup_fraction: the cap on the warm-up share of the run.
    """
    total = max(int(total_steps), 1)
    warmup = min(int(warmup_steps), max(int(total * max_warmup_fraction), 1))

    def factor(step: int) -> float:
        return warmup_cosine_factor(step, warmup=warmup, total=total, floor=floor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
