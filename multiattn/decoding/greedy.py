"""Greedy decoding: the arg-max token at every step, for a whole batch at once.

The baseline every beam search must reproduce at beam size 1 (Sutskever et al. 2014 decode with
a left-to-right beam; beam size 1 is greedy). Finished rows keep being fed to the step function
(one call per step for the whole batch) but their scores and tokens no longer change.

Shape legend: ``B`` batch items, ``t`` tokens so far (BOS included), ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from multiattn.decoding.types import Hypothesis, StepOutput, infer_device
from multiattn.masks import check_shape

__all__ = ["greedy_search", "resolve_max_len"]


def resolve_max_len(max_len: int | Tensor, batch_size: int) -> Tensor:
    """Per-item length limits as a CPU long tensor ``(B,)`` from an int or a ``(B,)`` tensor."""
    if isinstance(max_len, Tensor):
        check_shape("max_len", max_len, (batch_size,))
        limits = max_len.detach().to("cpu", torch.long)
    else:
        limits = torch.full((batch_size,), int(max_len), dtype=torch.long)
    if bool((limits < 1).any()):
        raise ValueError(f"max_len must be >= 1 for every item, received {limits.tolist()}")
    return limits


@torch.no_grad()
def greedy_search(
    step_fn: Callable[[Tensor, Any], StepOutput],
    state: Any,
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    max_len: int | Tensor,
    min_len: int = 0,
    device: torch.device | str | None = None,
) -> list[Hypothesis]:
    """Decode ``batch_size`` items greedily.

    Args:
        step_fn: ``(tokens (B, t), state) -> StepOutput(log_probs (B, V), state, attention)``.
        state: the initial state of the ``B`` items (hypothesis dimension first).
        batch_size: ``B``.
        bos_id: the token every sequence starts with.
        eos_id: the token that ends a sequence (not included in the output).
        max_len: at most this many steps (int or ``(B,)`` per item); a sequence that has not
            emitted EOS by then is returned with exactly ``max_len`` tokens and ``finished=False``.
        min_len: EOS is forbidden until this many tokens have been emitted.
        device: where to build the token tensor; default: the state's device, else the CPU.

    Returns:
        One :class:`Hypothesis` per item, ``score == log_prob`` (no length normalisation).
    """
    limits = resolve_max_len(max_len, batch_size)
    device = infer_device(state, device)
    tokens = torch.full((batch_size, 1), bos_id, dtype=torch.long, device=device)  # (B, 1)
    log_prob = torch.zeros(batch_size, dtype=torch.float32, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    active = torch.ones(batch_size, dtype=torch.bool, device=device)  # not finished, not cut
    lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
    limits_dev = limits.to(device)
    attention_steps: list[Tensor] = []
    for step in range(1, int(limits.max()) + 1):
        out = step_fn(tokens, state)
        check_shape("step_fn log_probs", out.log_probs, (batch_size, None))
        scores = out.log_probs.float()
        if step - 1 < min_len:
            scores = scores.clone()
            scores[:, eos_id] = float("-inf")
        best_score, best_token = scores.max(dim=1)  # (B,), (B,)
        if out.attention is not None:
            attention_steps.append(out.attention.detach())
        log_prob = torch.where(active, log_prob + best_score, log_prob)
        ended = active & (best_token == eos_id)
        finished |= ended
        lengths = torch.where(active & ~ended, lengths + 1, lengths)
        # Rows that are done emit EOS forever, so the token tensor stays rectangular.
        next_token = torch.where(active, best_token, torch.full_like(best_token, eos_id))
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (B, t + 1)
        active = active & ~ended & (limits_dev > step)
        state = out.state
        if not bool(active.any()):
            break
    hypotheses = []
    tokens_cpu, lengths_cpu, finished_cpu = tokens.cpu(), lengths.cpu(), finished.cpu()
    for item in range(batch_size):
        length = int(lengths_cpu[item])
        steps = length + int(finished_cpu[item])
        attention = torch.stack([a[item] for a in attention_steps[:steps]]) if attention_steps else None
        hypotheses.append(
            Hypothesis(
                tokens=tokens_cpu[item, 1 : 1 + length].tolist(),
                score=float(log_prob[item]),
                log_prob=float(log_prob[item]),
                attention=attention,
                finished=bool(finished_cpu[item]),
            )
        )
    return hypotheses
