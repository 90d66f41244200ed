"""The shared warm-up + cosine schedule keeps each task's former schedule (captioning, speech)."""

from __future__ import annotations

import math

import pytest
import torch

from multiattn.schedules import warmup_cosine


def _old_captioning(step: int, warmup_steps: int, total: int) -> float:
    warmup = min(warmup_steps, total // 4)
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _old_speech(step: int, warmup_steps: int, total: int) -> float:
    warmup = min(warmup_steps, max(total // 10, 1))
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _factors(total: int, warmup_steps: int, floor: float, fraction: float) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(
        optimizer, total_steps=total, warmup_steps=warmup_steps, floor=floor, max_warmup_fraction=fraction
    )
    factors = []
    for _ in range(total + 3):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return factors


@pytest.mark.parametrize("total, warmup_steps", [(4, 1), (40, 0), (40, 5), (100, 200), (1000, 30)])
def test_captioning_schedule_is_kept(total, warmup_steps):
    expected = [_old_captioning(step, warmup_steps, total) for step in range(total + 3)]
    assert _factors(total, warmup_steps, 0.05, 0.25) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("total, warmup_steps", [(3, 2), (40, 0), (40, 5), (100, 200), (1000, 30)])
def test_speech_schedule_is_kept(total, warmup_steps):
    expected = [_old_speech(step, warmup_steps, total) for step in range(total + 3)]
    assert _factors(total, warmup_steps, 0.02, 0.1) == pytest.approx(expected, abs=1e-12)


def test_the_floor_is_a_fraction_of_each_group_rate():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (1.0, 0.1)]
    optimizer = torch.optim.SGD(groups)
    schedule = warmup_cosine(optimizer, total_steps=10, warmup_steps=0, floor=0.5, max_warmup_fraction=0.1)
    for _ in range(12):
        optimizer.step()
        schedule.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.5, 0.05])
