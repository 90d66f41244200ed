"""Shallow fusion: a language model's log-probabilities added to a decoder's at every search step.

Gulcehre et al. 2015 ("On Using Monolingual Corpora in Neural Machine Translation"); for speech,
Kannan et al. 2018 and the hybrid CTC/attention recipes (Watanabe et al. 2017). The fused step
scores every extension by::

    log p_dec(y | x, y_<t) + lm_weight * log p_lm(y | y_<t)

and carries the language model's state beside the decoder's (both reordered with the beams), so
:func:`~multiattn.decoding.beam_search` and :func:`~multiattn.decoding.greedy_search` need no
change. In joint CTC/attention decoding the fused score is the attention term, so its ``1.5 K``
pre-beam candidates are ranked with the language model's help and the final score is
``(1 - w) (log p_att + lm_weight log p_lm) + w delta log p_ctc``.

Shape legend: ``N`` hypotheses, ``t`` tokens so far (BOS included), ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from torch import Tensor

from multiattn.decoding.types import StepOutput, infer_device
from multiattn.masks import check_shape

__all__ = ["FusedState", "StepLanguageModel", "shallow_fusion"]


class StepLanguageModel(Protocol):
    """What fusion needs of a language model (e.g. :class:`multiattn.language_model.LSTMLanguageModel`).

    ``init_state(batch_size, device=...)`` returns the state of empty sequences (reorderable:
    tensors with the row first, or an object with ``reorder(indices)``); ``step(last (N,), state)``
    returns ``(log_probs (N, V), state)`` after reading each row's newest token.
    """

    def init_state(self, batch_size: int, *, device: Any = None) -> Any: ...

    def step(self, last: Tensor, state: Any) -> tuple[Tensor, Any]: ...


class FusedState(NamedTuple):
    """The search state of a fused step: the decoder's and the language model's, row for row."""

    decoder: Any
    language_model: Any


def shallow_fusion(
    step_fn: Callable[[Tensor, Any], StepOutput],
    language_model: StepLanguageModel,
    *,
    lm_weight: float,
) -> tuple[Callable[[Tensor, FusedState], StepOutput], Callable[[Any, int], FusedState]]:
    """Wrap ``step_fn`` so every step adds ``lm_weight * log p_lm`` to the decoder's log-probs.

    Args:
        step_fn: the decoder's ``(tokens (N, t), state) -> StepOutput``.
        language_model: a :class:`StepLanguageModel` over the decoder's vocabulary (same ids; the
            first token of every prefix, BOS, is also the language model's first input).
        lm_weight: ``>= 0``; ``0`` gives a step equal to ``step_fn``'s.

    Returns:
        ``(fused_step_fn, init)``: ``init(decoder_state, batch_size)`` builds the search's initial
        :class:`FusedState`; pass it and ``fused_step_fn`` to the search instead of the decoder's.
    """
    if lm_weight < 0:
        raise ValueError(f"lm_weight must be >= 0, received {lm_weight}")

    def init(decoder_state: Any, batch_size: int) -> FusedState:
        device = infer_device(decoder_state, None)
        return FusedState(decoder_state, language_model.init_state(batch_size, device=device))

    def fused_step(tokens: Tensor, state: FusedState) -> StepOutput:
        out = step_fn(tokens, state.decoder)
        lm_log_probs, lm_state = language_model.step(tokens[:, -1], state.language_model)  # (N, V)
        check_shape("language model log_probs", lm_log_probs, tuple(out.log_probs.shape))
        return StepOutput(
            out.log_probs.float() + lm_weight * lm_log_probs, FusedState(out.state, lm_state), out.attention
        )

    return fused_step, init
