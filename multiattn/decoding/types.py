"""Shared types of the decoders: the step contract, hypotheses, and reordering decoder state.

Every search in :mod:`multiattn.decoding` drives a model through one function::

    step_fn(tokens (N, t), state) -> StepOutput(log_probs (N, V), state, attention (N, ...) | None)

``tokens`` holds every token so far, BOS included; ``N`` counts hypotheses (batch × beam for beam
search). The state is any pytree — tensors, tuples, lists, dicts, ``None``, or objects with a
``reorder(indices)`` method (the transformer's KV cache) — whose tensors carry the hypothesis
dimension first. After each step the search keeps some hypotheses and drops others, so it calls
:func:`reorder_state` with the row each surviving hypothesis came from.

Shape legend: ``B`` batch items, ``K`` beam size, ``N`` hypotheses (``B * K``), ``t`` tokens so
far (BOS included), ``V`` vocabulary, ``S`` attended positions (source tokens, grid cells, frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["StepOutput", "Hypothesis", "reorder_state", "expand_state", "infer_device"]


class StepOutput(NamedTuple):
    """What a step function returns for one decoding step.

    Attributes:
        log_probs: ``(N, V)`` log-probabilities of the next token for every hypothesis.
        state: the state after consuming ``tokens`` (hypothesis dimension first).
        attention: ``(N, ...)`` the attention this step computed for each hypothesis (e.g.
            ``(N, S)`` over source positions or ``(N, H, W)`` over a grid), or ``None``.
    """

    log_probs: Tensor
    state: Any
    attention: Tensor | None = None


@dataclass
class Hypothesis:
    """One decoded sequence.

    Attributes:
        tokens: the output tokens without BOS and EOS.
        score: the length-normalised score the search ranked finished hypotheses by (for greedy
            search, equal to ``log_prob``).
        log_prob: the raw sum of the per-step scores (for joint CTC/attention decoding the
            weighted joint score, unnormalised).
        attention: ``(steps, ...)`` the attention computed at each step for this hypothesis's own
            prefix, or ``None`` when the step function returns none. ``steps == len(tokens) + 1``
            when the hypothesis ended with EOS (the last row is the step that emitted EOS) and
            ``len(tokens)`` when it was cut at the length limit; take ``attention[:len(tokens)]``
            for one map per output token.
        finished: ``True`` when the hypothesis emitted EOS, ``False`` when the length limit cut
            it (returned only when no hypothesis of that item finished).
    """

    tokens: list[int]
    score: float
    log_prob: float
    attention: Tensor | None = None
    finished: bool = True


def reorder_state(state: Any, indices: Tensor) -> Any:
    """Select hypotheses ``indices`` along the first dimension of every tensor in ``state``.

    Args:
        state: a pytree of tensors ``(N, ...)`` (tuples, NamedTuples, lists, dicts), ``None``, plain
            Python values (returned unchanged) or objects with a ``reorder(indices)`` method. Such a
            method may return the reordered object or reorder in place and return ``None``.
        indices: ``(M,)`` long tensor of rows to keep, in their new order (may repeat rows or
            have fewer rows than ``N``).

    Returns:
        A state of the same structure with ``M`` hypotheses.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        if state.dim() == 0:
            return state
        return state.index_select(0, indices.to(state.device))
    if hasattr(state, "reorder") and callable(state.reorder):
        result = state.reorder(indices)
        return state if result is None else result
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple: rebuild by field
        return type(state)(*(reorder_state(item, indices) for item in state))
    if isinstance(state, tuple):
        return tuple(reorder_state(item, indices) for item in state)
    if isinstance(state, list):
        return [reorder_state(item, indices) for item in state]
    if isinstance(state, dict):
        return {key: reorder_state(value, indices) for key, value in state.items()}
    return state


def _first_tensor(state: Any, _seen: set[int] | None = None) -> Tensor | None:
    """The first tensor found in a pytree (objects are searched through their attributes), or ``None``."""
    if isinstance(state, Tensor):
        return state
    seen = set() if _seen is None else _seen
    if id(state) in seen or isinstance(state, (str, bytes, int, float, bool, type(None))):
        return None
    seen.add(id(state))  # objects may hold cycles (a cache pointing back at its owner)
    if isinstance(state, (tuple, list)):
        items = list(state)
    elif isinstance(state, dict):
        items = list(state.values())
    else:
        items = list(getattr(state, "__dict__", {}).values())
    for item in items:
        found = _first_tensor(item, seen)
        if found is not None:
            return found
    return None


def expand_state(
    state: Any, beam_size: int, *, batch_size: int | None = None, device: torch.device | str | None = None
) -> Any:
    """Repeat every batch item's state ``beam_size`` times: ``B`` items -> ``B * beam_size`` rows.

    Row ``b * beam_size + k`` is beam ``k`` of item ``b`` (``repeat_interleave`` order), the
    layout :func:`~multiattn.decoding.beam.beam_search` uses throughout.

    Args:
        state: the initial state of ``B`` items (see :func:`reorder_state`).
        beam_size: ``K``.
        batch_size: ``B``; inferred from the first tensor in ``state`` when omitted (give it when
            the state holds only objects with a ``reorder`` method).
        device: where to build the row indices; default: the device of the state's first tensor.

    Objects whose ``reorder`` works in place (the transformer's ``DecoderCache``) are modified.
    """
    if batch_size is None:
        tensor = _first_tensor(state)
        if tensor is None:
            if state is None:
                return None
            raise ValueError(
                "expand_state: cannot infer batch_size from a state without tensors; pass batch_size="
            )
        batch_size = tensor.shape[0]
    indices = torch.arange(batch_size, device=infer_device(state, device)).repeat_interleave(
        beam_size
    )  # (B * K,)
    return reorder_state(state, indices)


def infer_device(state: Any, device: torch.device | str | None) -> torch.device:
    """``device`` if given, else the device of the first tensor in ``state``, else the CPU."""
    if device is not None:
        return torch.device(device)
    tensor = _first_tensor(state)
    return tensor.device if tensor is not None else torch.device("cpu")
