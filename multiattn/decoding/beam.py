"""Batched beam search with length normalisation and optional joint CTC/attention scoring.

One ``step_fn`` call per time step scores all ``B * K`` hypotheses of all items (Sutskever et al.
2014; length normalisation of Wu et al. 2016, GNMT; joint decoding of Watanabe et al. 2017,
"Hybrid CTC/Attention Architecture for End-to-End Speech Recognition").

Per step: every alive hypothesis proposes all ``V`` extensions, the ``2K`` best per item (by raw
cumulative score) are taken with one vectorised ``topk``; EOS candidates among the first ``K``
become finished hypotheses, the first ``K`` non-EOS candidates stay alive, and the state is
reordered by the rows they came from. Finished hypotheses are ranked by the normalised score
``log_prob / lp(length)`` where ``length`` counts the scored steps (output tokens plus EOS):

- ``length_norm="gnmt"``: ``lp(l) = ((5 + l) / 6) ** length_penalty`` (Wu et al. 2016);
- ``length_norm="simple"``: ``lp(l) = l ** length_penalty`` (``1.0`` gives the mean log-prob).

``length_penalty=0`` turns normalisation off. An item stops when its ``n_best``-th finished score
is at least the best score any alive hypothesis could still reach (per-step scores are
log-probabilities, so a raw score only falls; dividing by ``lp(max_len)`` bounds it), or at its
length limit; a stopped item's rows leave the batch, so later steps compute only the items still
running, and the search ends when every item has stopped. The first step scores each item's empty
prefix on one row per item, not ``K`` identical rows. If no hypothesis of an item emitted EOS,
its best unfinished hypothesis (``max_len`` tokens) is returned, so there is always an answer.

Shape legend: ``B`` batch items, ``K`` beam size, ``N = B * K`` hypotheses (row ``b * K + k``),
``t`` tokens so far (BOS included), ``V`` vocabulary, ``P`` candidates scored by a prefix scorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from multiattn.decoding.greedy import resolve_max_len
from multiattn.decoding.types import Hypothesis, StepOutput, infer_device, reorder_state
from multiattn.masks import check_shape

__all__ = ["PrefixScorer", "beam_search", "length_normaliser"]


class PrefixScorer(Protocol):
    """A batched scorer of prefix extensions with its own per-hypothesis state (e.g. CTC).

    ``initial_state()`` returns the state of the ``B`` items (with a ``reorder(indices)`` method:
    the search drops rows of stopped items with it). ``score(state, candidates (N, P))`` returns
    ``(delta (N, P), candidate_state)``: the change of the scorer's log-score when each candidate
    token is appended (``<= 0``). ``select(candidate_state, rows (M,), tokens (M,))`` returns the
    state of the kept hypotheses ``prefix[rows] + tokens`` (``M = B * K`` after the first step,
    which scores the ``B`` empty prefixes).
    """

    def initial_state(self) -> Any: ...

    def score(self, state: Any, candidates: Tensor) -> tuple[Tensor, Any]: ...

    def select(self, candidate_state: Any, rows: Tensor, tokens: Tensor) -> Any: ...


def length_normaliser(length: Tensor | float, *, length_penalty: float, length_norm: str) -> Tensor | float:
    """``lp(length)`` of the module docstring (``1`` when ``length_penalty == 0``)."""
    if length_norm == "gnmt":
        return ((5.0 + length) / 6.0) ** length_penalty
    if length_norm == "simple":
        return length**length_penalty
    raise ValueError(f"length_norm must be 'gnmt' or 'simple', received {length_norm!r}")


class _Ended:
    """A finished (or cut) hypothesis before its attention is gathered."""

    __slots__ = ("score", "log_prob", "tokens", "step", "row", "finished")

    def __init__(self, score: float, log_prob: float, tokens: list[int], step: int, row: int, finished: bool):
        self.score, self.log_prob, self.tokens = score, log_prob, tokens
        self.step, self.row, self.finished = step, row, finished  # row: input row of that step


def _gather_attention(
    ended: _Ended, attention_steps: list[Tensor], backpointers: list[Tensor]
) -> Tensor | None:
    """Follow the back-pointers from ``ended`` to step 1, picking that hypothesis's attention rows."""
    if not attention_steps:
        return None
    rows = [0] * ended.step
    row = ended.row
    for step in range(ended.step, 0, -1):
        rows[step - 1] = row
        if step > 1:
            row = int(backpointers[step - 2][row])  # the row at step - 1 this prefix came from
    return torch.stack([attention_steps[s][r] for s, r in enumerate(rows)])  # (steps, ...)


@torch.no_grad()
def beam_search(
    step_fn: Callable[[Tensor, Any], StepOutput],
    state: Any,
    *,
    batch_size: int,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    max_len: int | Tensor,
    length_penalty: float = 1.0,
    length_norm: str = "gnmt",
    min_len: int = 0,
    ctc_scorer: PrefixScorer | None = None,
    ctc_weight: float = 0.0,
    pre_beam: int | None = None,
    n_best: int = 1,
    return_all: bool = False,
    device: torch.device | str | None = None,
) -> list[Hypothesis] | list[list[Hypothesis]]:
    """Beam search over ``batch_size`` items at once.

    Args:
        step_fn: ``(tokens (N, t), state) -> StepOutput(log_probs (N, V), state, attention)``.
        state: the initial state of the ``B`` items; the first step runs on these ``B`` rows and
            its kept rows expand it to ``B * K`` (objects that reorder in place are modified). Anything per item the step function reads, such
            as the encoder memory and its mask, belongs in the state so it follows the beams.
        batch_size: ``B``.
        beam_size: ``K``.
        bos_id: first token of every prefix.
        eos_id: the token that finishes a hypothesis (not part of ``tokens``).
        max_len: at most this many steps, as an int or a ``(B,)`` tensor (e.g. relative to each
            input's length); a finished hypothesis has at most ``max_len - 1`` tokens plus EOS, an
            unfinished one (returned only if none finished) exactly ``max_len`` tokens.
        length_penalty: exponent ``alpha`` of the length normaliser; ``0`` = raw log-probs.
        length_norm: ``"gnmt"`` or ``"simple"`` (module docstring).
        min_len: EOS is forbidden until this many tokens have been emitted.
        ctc_scorer: a :class:`PrefixScorer` (e.g. :class:`~multiattn.decoding.ctc.CTCPrefixScorer`).
        ctc_weight: ``w`` in ``(1 - w) * attention + w * ctc_delta``; ``0`` ignores the scorer, so
            the search is exactly attention-only beam search.
        pre_beam: how many candidates per hypothesis, ranked by the attention log-probs, the scorer
            scores (the rest get ``-inf``); default ``ceil(1.5 * K)``. At ``ctc_weight == 1`` the
            attention ranking says nothing, so all ``V`` tokens are scored.
        n_best: how many finished hypotheses per item must be unbeatable before the item stops
            (and how many ``return_all`` returns).
        return_all: return ``n_best`` hypotheses per item, best first, instead of the best one.
        device: where to build token tensors; default: the state's device, else the CPU.

    Returns:
        One :class:`Hypothesis` per item (or a list of up to ``n_best`` per item).
    """
    if beam_size < 1 or n_best < 1 or n_best > beam_size:
        raise ValueError(f"need 1 <= n_best <= beam_size, received n_best={n_best}, beam_size={beam_size}")
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], received {ctc_weight}")
    if ctc_weight > 0.0 and ctc_scorer is None:
        raise ValueError(f"ctc_weight={ctc_weight} needs a ctc_scorer (pass ctc_scorer=CTCPrefixScorer(...))")
    length_normaliser(1.0, length_penalty=length_penalty, length_norm=length_norm)  # validates the name
    B, K = batch_size, beam_size
    limits = resolve_max_len(max_len, B)  # (B,) on the CPU
    device = infer_device(state, device)
    use_scorer = ctc_scorer is not None and ctc_weight > 0.0
    pre_beam = pre_beam if pre_beam is not None else math.ceil(1.5 * K)

    # The first step scores each item's single empty prefix on B rows; its K best extensions then
    # become the K beams (the kept rows' reorder expands every state from B to B * K rows).
    scorer_state = ctc_scorer.initial_state() if use_scorer else None
    tokens = torch.full((B, 1), bos_id, dtype=torch.long, device=device)  # (B, 1)
    scores = torch.zeros((B, 1), device=device)  # (B, beams): one live beam per item at first
    rank = torch.arange(2 * K, device=device)[None, :]  # (1, 2K)
    best_bound_lp = length_normaliser(limits.double(), length_penalty=length_penalty, length_norm=length_norm)
    beam_offset = torch.arange(K)  # (K,) CPU

    ended: list[list[_Ended]] = [[] for _ in range(B)]
    fallback: list[_Ended | None] = [None] * B
    nth_best = [float("-inf")] * B  # each item's n_best-th finished score, once it has n_best
    # The items still searched, in row order: the rows of item active[i] are i*K .. i*K+K-1.
    # A stopped item's rows are dropped, so later steps compute only the items still running.
    active = torch.arange(B)  # (A,) CPU
    attention_steps: list[Tensor] = []
    backpointers: list[Tensor] = []  # per step, (N,) CPU: the row each next-step row came from

    for step in range(1, int(limits.max()) + 1):
        A = active.numel()
        beams = scores.shape[1]  # 1 at the first step, then K
        N = A * beams
        out = step_fn(tokens, state)
        check_shape("step_fn log_probs", out.log_probs, (N, None))
        log_probs = out.log_probs.float()  # (N, V)
        V = log_probs.shape[1]
        if out.attention is not None:
            attention_steps.append(out.attention.detach())
        if use_scorer:
            if ctc_weight >= 1.0 or pre_beam >= V:
                candidates = torch.arange(V, device=device).expand(N, V)  # (N, V)
            else:
                candidates = log_probs.topk(pre_beam, dim=1).indices  # (N, P)
            delta, scorer_candidates = ctc_scorer.score(scorer_state, candidates)
            attention_part = log_probs.gather(1, candidates)  # (N, P)
            # 0 * -inf is NaN, so the attention term is left out entirely at ctc_weight == 1.
            joint = delta if ctc_weight >= 1.0 else (1.0 - ctc_weight) * attention_part + ctc_weight * delta
            step_scores = torch.full_like(log_probs, float("-inf")).scatter(1, candidates, joint)
        else:
            step_scores = log_probs
        if step - 1 < min_len:
            step_scores = step_scores.clone()
            step_scores[:, eos_id] = float("-inf")

        total = (scores.reshape(N, 1) + step_scores).reshape(A, beams * V)  # (A, beams*V)
        top_scores, top_index = total.topk(min(2 * K, beams * V), dim=1)  # (A, 2K)
        source_beam = torch.div(top_index, V, rounding_mode="floor")  # (A, 2K)
        top_tokens = top_index % V  # (A, 2K)
        source_row = torch.arange(A, device=device)[:, None] * beams + source_beam  # (A, 2K)
        is_eos = top_tokens == eos_id
        if top_scores.shape[1] < 2 * K:  # tiny vocabularies: pad so K non-EOS candidates exist
            pad = 2 * K - top_scores.shape[1]
            top_scores = torch.cat([top_scores, top_scores.new_full((A, pad), float("-inf"))], 1)
            source_row = torch.cat([source_row, source_row[:, :1].expand(A, pad)], 1)
            top_tokens = torch.cat([top_tokens, top_tokens.new_zeros(A, pad)], 1)
            is_eos = torch.cat([is_eos, is_eos.new_zeros(A, pad)], 1)

        # EOS among the K best candidates finishes a hypothesis (as in a plain beam of size K).
        new_ended = is_eos & (rank < K) & torch.isfinite(top_scores)
        if bool(new_ended.any()):
            lp_now = length_normaliser(float(step), length_penalty=length_penalty, length_norm=length_norm)
            position, candidate = new_ended.nonzero().unbind(1)  # (E,), (E,)
            rows = source_row[position, candidate]  # (E,)
            prefixes = tokens.index_select(0, rows)[:, 1:].tolist()
            items = active.index_select(0, position.cpu()).tolist()
            for item, raw, prefix, row in zip(
                items, top_scores[position, candidate].tolist(), prefixes, rows.tolist()
            ):
                ended[item].append(_Ended(raw / lp_now, raw, prefix, step, row, True))
                if len(ended[item]) >= n_best:
                    nth_best[item] = sorted((e.score for e in ended[item]), reverse=True)[n_best - 1]

        # The first K non-EOS candidates (in score order) stay alive.
        keep = (is_eos.long() * 2 * K + rank).argsort(dim=1)[:, :K]  # (A, K)
        scores = top_scores.gather(1, keep)  # (A, K)
        kept_rows = source_row.gather(1, keep).reshape(A * K)  # (A*K,) rows of this step's N
        kept_tokens = top_tokens.gather(1, keep).reshape(A * K)  # (A*K,)
        tokens = torch.cat([tokens.index_select(0, kept_rows), kept_tokens[:, None]], dim=1)  # (A*K, t + 1)
        state = reorder_state(out.state, kept_rows)
        if use_scorer:
            scorer_state = ctc_scorer.select(scorer_candidates, kept_rows, kept_tokens)
        kept_rows = kept_rows.cpu()

        # Items at their length limit: remember the best unfinished hypothesis, then stop.
        scores_cpu = scores.cpu()
        at_limit = limits[active] == step  # (A,)
        if bool(at_limit.any()):
            lp_now = length_normaliser(float(step), length_penalty=length_penalty, length_norm=length_norm)
            position = at_limit.nonzero().flatten()  # (L,)
            rows = position * K  # each item's best alive hypothesis (keep is in score order)
            prefixes = tokens.index_select(0, rows.to(device))[:, 1:].tolist()
            for item, raw, prefix, row in zip(
                active[position].tolist(),
                scores_cpu[position, 0].tolist(),
                prefixes,
                kept_rows[rows].tolist(),
            ):
                fallback[item] = _Ended(raw / lp_now, raw, prefix, step, row, False)
        # Items whose n_best-th finished hypothesis no alive one can beat. Finished scores are
        # finite, so a finite nth_best means n_best have finished (-inf would "beat" a bound of
        # -inf and stop an item that has nothing yet).
        best_alive = scores_cpu.max(dim=1).values.double()  # (A,)
        lp_next = length_normaliser(float(step + 1), length_penalty=length_penalty, length_norm=length_norm)
        bound = torch.where(best_alive <= 0, best_alive / best_bound_lp[active], best_alive / lp_next)  # (A,)
        nth = torch.tensor(nth_best, dtype=torch.float64)[active]  # (A,)
        stopped = at_limit | (torch.isfinite(nth) & (nth >= bound))  # (A,)
        if bool(stopped.all()):
            break
        if bool(stopped.any()):  # drop the stopped items' rows from every later step
            running = (~stopped).nonzero().flatten()  # (A',)
            rows = (running[:, None] * K + beam_offset).reshape(-1)  # (A' * K,)
            rows_device = rows.to(device)
            kept_rows = kept_rows.index_select(0, rows)
            tokens = tokens.index_select(0, rows_device)
            scores = scores.index_select(0, running.to(device))
            state = reorder_state(state, rows_device)
            if use_scorer:
                scorer_state = reorder_state(scorer_state, rows_device)
            active = active.index_select(0, running)
        backpointers.append(kept_rows)

    results: list[list[Hypothesis]] = []
    for item in range(B):
        chosen = sorted(ended[item], key=lambda e: e.score, reverse=True)[:n_best]
        if not chosen:
            chosen = [fallback[item]]
        results.append(
            [
                Hypothesis(
                    tokens=e.tokens,
                    score=e.score,
                    log_prob=e.log_prob,
                    attention=_gather_attention(e, attention_steps, backpointers),
                    finished=e.finished,
                )
                for e in chosen
            ]
        )
    return results if return_all else [hyps[0] for hyps in results]
