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

The loop is a few named steps of one search (``_Search``): ``score`` the extensions of every row
(with the prefix scorer), ``expand`` them to each item's ``2K`` best, ``finish`` the EOS ones,
``select`` the ``K`` that stay alive (the states follow their rows), ``stop`` the items that are
done and ``drop`` their rows; ``results`` ranks each item's finished hypotheses.

Shape legend: ``B`` batch items, ``K`` beam size, ``N = B * K`` hypotheses (row ``b * K + k``),
``t`` tokens so far (BOS included), ``V`` vocabulary, ``P`` candidates scored by a prefix scorer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

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


@dataclass(slots=True)
class _Beams:
    """The alive hypotheses of the items still searched (rows ``i*beams .. i*beams+beams-1``: item ``active[i]``).

    Attributes:
        tokens: ``(A * beams, t)`` prefixes, BOS first.
        scores: ``(A, beams)`` raw cumulative scores, best first (``beams`` is 1 at the first step, then K).
        active: ``(A,)`` CPU, the items still searched, in row order.
        state: the step function's state of these rows.
        scorer_state: the prefix scorer's state of these rows (``None`` without a scorer).
        came_from: ``(A * beams,)`` CPU, the row of the previous step each row extends.
    """

    tokens: Tensor
    scores: Tensor
    active: Tensor
    state: Any
    scorer_state: Any
    came_from: Tensor | None = None


class _Candidates(NamedTuple):
    """Each item's ``2K`` best extensions by raw cumulative score, best first: ``(A, 2K)`` each."""

    scores: Tensor
    rows: Tensor  # the row each extends
    tokens: Tensor
    is_eos: Tensor


class _JointScore:
    """Joint CTC/attention scores of one step: ``(1 - w) * attention + w * delta`` (Watanabe et al. 2017).

    The prefix scorer scores each row's ``pre_beam`` best tokens by the attention log-probs (all
    ``V`` at ``w == 1``, where the attention ranking says nothing); the other tokens get ``-inf``.
    """

    def __init__(self, scorer: PrefixScorer, *, weight: float, pre_beam: int, device: torch.device) -> None:
        self.scorer, self.weight, self.pre_beam, self.device = scorer, weight, pre_beam, device

    def __call__(self, log_probs: Tensor, state: Any) -> tuple[Tensor, Any]:
        """``log_probs (N, V)`` -> ``(joint scores (N, V), the scorer's candidate state)``."""
        rows, vocab = log_probs.shape
        if self.weight >= 1.0 or self.pre_beam >= vocab:
            candidates = torch.arange(vocab, device=self.device).expand(rows, vocab)  # (N, V)
        else:
            candidates = log_probs.topk(self.pre_beam, dim=1).indices  # (N, P)
        delta, candidate_state = self.scorer.score(state, candidates)
        attention_part = log_probs.gather(1, candidates)  # (N, P)
        # 0 * -inf is NaN, so the attention term is left out entirely at ctc_weight == 1.
        w = self.weight
        joint = delta if w >= 1.0 else (1.0 - w) * attention_part + w * delta
        return torch.full_like(log_probs, float("-inf")).scatter(1, candidates, joint), candidate_state


class _Search:
    """The bookkeeping of one :func:`beam_search`: its settings, finished hypotheses and back-pointers.

    Args:
        limits: ``(B,)`` CPU, each item's step limit.
        joint: the joint CTC/attention scores, or ``None`` (attention only).
        (the rest as :func:`beam_search`'s).
    """

    def __init__(
        self,
        limits: Tensor,
        *,
        beam_size: int,
        eos_id: int,
        min_len: int,
        n_best: int,
        length: Callable[[Tensor | float], Tensor | float],
        joint: _JointScore | None,
        device: torch.device,
    ) -> None:
        self.K, self.eos_id, self.min_len, self.n_best = beam_size, eos_id, min_len, n_best
        self.lp, self.joint, self.device, self.limits = length, joint, device, limits
        self.best_bound_lp = self.lp(limits.double())  # (B,)
        self.rank = torch.arange(2 * beam_size, device=device)[None, :]  # (1, 2K)
        batch_size = limits.numel()
        self.ended: list[list[_Ended]] = [[] for _ in range(batch_size)]
        self.fallback: list[_Ended | None] = [None] * batch_size
        # Each item's n_best-th finished score once it has n_best (-inf before); any_nth: some has.
        self.nth_best = torch.full((batch_size,), float("-inf"), dtype=torch.float64)  # (B,) CPU
        self.any_nth = False
        self.attention_steps: list[Tensor] = []
        self.backpointers: list[Tensor] = []  # per step, (N,) CPU: the row each next-step row came from

    def start(self, state: Any, *, batch_size: int, bos_id: int) -> _Beams:
        """One row per item: its empty prefix (the first step's ``K`` best extensions become its beams)."""
        return _Beams(
            tokens=torch.full((batch_size, 1), bos_id, dtype=torch.long, device=self.device),  # (B, 1)
            scores=torch.zeros((batch_size, 1), device=self.device),  # (B, 1)
            active=torch.arange(batch_size),  # (B,) CPU
            state=state,
            scorer_state=None if self.joint is None else self.joint.scorer.initial_state(),
        )

    def score(self, beams: _Beams, out: StepOutput, step: int) -> tuple[Tensor, Any]:
        """Score every extension of every row: ``(step_scores (N, V), scorer candidates)``.

        The attention log-probabilities, or with a prefix scorer ``(1 - w) attention + w delta`` on
        the ``pre_beam`` best tokens of each row (the others ``-inf``); EOS is ``-inf`` before ``min_len``.
        """
        check_shape("step_fn log_probs", out.log_probs, (beams.tokens.shape[0], None))
        log_probs = out.log_probs.float()  # (N, V)
        if out.attention is not None:
            self.attention_steps.append(out.attention.detach())
        step_scores, scorer_candidates = log_probs, None
        if self.joint is not None:
            step_scores, scorer_candidates = self.joint(log_probs, beams.scorer_state)
        if step - 1 < self.min_len:
            step_scores = step_scores.clone()
            step_scores[:, self.eos_id] = float("-inf")
        return step_scores, scorer_candidates

    def expand(self, beams: _Beams, step_scores: Tensor) -> _Candidates:
        """Each item's ``2K`` best extensions over all its rows (one vectorised ``topk``)."""
        active, rows_per_item = beams.scores.shape
        vocab = step_scores.shape[1]
        total = beams.scores.reshape(-1, 1) + step_scores  # (N, V)
        total = total.reshape(active, rows_per_item * vocab)  # (A, beams*V)
        scores, index = total.topk(min(2 * self.K, rows_per_item * vocab), dim=1)  # (A, 2K)
        source_beam = torch.div(index, vocab, rounding_mode="floor")  # (A, 2K)
        tokens = index % vocab  # (A, 2K)
        rows = torch.arange(active, device=self.device)[:, None] * rows_per_item + source_beam  # (A, 2K)
        is_eos = tokens == self.eos_id
        if scores.shape[1] < 2 * self.K:  # tiny vocabularies: pad so K non-EOS candidates exist
            pad = 2 * self.K - scores.shape[1]
            scores = torch.cat([scores, scores.new_full((active, pad), float("-inf"))], 1)
            rows = torch.cat([rows, rows[:, :1].expand(active, pad)], 1)
            tokens = torch.cat([tokens, tokens.new_zeros(active, pad)], 1)
            is_eos = torch.cat([is_eos, is_eos.new_zeros(active, pad)], 1)
        return _Candidates(scores, rows, tokens, is_eos)

    def finish(self, beams: _Beams, candidates: _Candidates, step: int) -> None:
        """EOS among an item's ``K`` best candidates finishes a hypothesis (as in a plain beam of size K)."""
        new_ended = candidates.is_eos & (self.rank < self.K) & torch.isfinite(candidates.scores)
        if not bool(new_ended.any()):
            return
        lp_now = self.lp(float(step))
        position, candidate = new_ended.nonzero().unbind(1)  # (E,), (E,)
        rows = candidates.rows[position, candidate]  # (E,)
        prefixes = beams.tokens.index_select(0, rows)[:, 1:].tolist()
        items = beams.active.index_select(0, position.cpu()).tolist()
        raws = candidates.scores[position, candidate].tolist()
        for item, raw, prefix, row in zip(items, raws, prefixes, rows.tolist()):
            self.ended[item].append(_Ended(raw / lp_now, raw, prefix, step, row, True))
            if len(self.ended[item]) >= self.n_best:
                ranked = sorted((e.score for e in self.ended[item]), reverse=True)
                self.nth_best[item] = ranked[self.n_best - 1]
                self.any_nth = True

    def select(self, beams: _Beams, candidates: _Candidates, state: Any, scorer_candidates: Any) -> _Beams:
        """The first ``K`` non-EOS candidates of each item (in score order) stay alive; states follow their rows."""
        active, K = beams.active.numel(), self.K
        keep = (candidates.is_eos.long() * 2 * K + self.rank).argsort(dim=1)[:, :K]  # (A, K)
        kept_rows = candidates.rows.gather(1, keep).reshape(active * K)  # (A*K,) rows of this step's N
        kept_tokens = candidates.tokens.gather(1, keep).reshape(active * K)  # (A*K,)
        prefixes = beams.tokens.index_select(0, kept_rows)  # (A*K, t)
        tokens = torch.cat([prefixes, kept_tokens[:, None]], dim=1)  # (A*K, t+1)
        scores = candidates.scores.gather(1, keep)  # (A, K)
        state = reorder_state(state, kept_rows)
        scorer_state = None
        if self.joint is not None:
            scorer_state = self.joint.scorer.select(scorer_candidates, kept_rows, kept_tokens)
        return _Beams(tokens, scores, beams.active, state, scorer_state, came_from=kept_rows.cpu())

    def stop(self, beams: _Beams, step: int) -> Tensor:
        """``(A,)`` bool: the items that stop after ``step``.

        An item at its length limit stops (its best unfinished hypothesis is kept as the fallback
        answer), and so does one whose ``n_best``-th finished hypothesis no alive one can beat.
        """
        scores_cpu = None
        at_limit = self.limits[beams.active] == step  # (A,)
        if bool(at_limit.any()):
            scores_cpu = beams.scores.cpu()
            lp_now = self.lp(float(step))
            position = at_limit.nonzero().flatten()  # (L,)
            rows = position * self.K  # each item's best alive hypothesis (kept in score order)
            prefixes = beams.tokens.index_select(0, rows.to(self.device))[:, 1:].tolist()
            for item, raw, prefix, row in zip(
                beams.active[position].tolist(),
                scores_cpu[position, 0].tolist(),
                prefixes,
                beams.came_from[rows].tolist(),
            ):
                self.fallback[item] = _Ended(raw / lp_now, raw, prefix, step, row, False)
        if not self.any_nth:  # no item has n_best finished hypotheses yet
            return at_limit
        # Finished scores are finite, so a finite nth_best means n_best have finished (-inf would
        # "beat" a bound of -inf and stop an item that has nothing yet).
        scores_cpu = beams.scores.cpu() if scores_cpu is None else scores_cpu
        best_alive = scores_cpu.max(dim=1).values.double()  # (A,)
        lp_next = self.lp(float(step + 1))
        # (A,): the best normalised score an alive hypothesis could still reach
        bound = torch.where(
            best_alive <= 0, best_alive / self.best_bound_lp[beams.active], best_alive / lp_next
        )
        nth = self.nth_best[beams.active]  # (A,)
        return at_limit | (torch.isfinite(nth) & (nth >= bound))

    def drop(self, beams: _Beams, stopped: Tensor) -> _Beams:
        """The stopped items' rows leave every later step; the back-pointers of this step are kept."""
        if bool(stopped.any()):
            running = (~stopped).nonzero().flatten()  # (A',)
            rows = (running[:, None] * self.K + torch.arange(self.K)).reshape(-1)  # (A' * K,) CPU
            rows_device = rows.to(self.device)
            beams = _Beams(
                tokens=beams.tokens.index_select(0, rows_device),
                scores=beams.scores.index_select(0, running.to(self.device)),
                active=beams.active.index_select(0, running),
                state=reorder_state(beams.state, rows_device),
                scorer_state=None if self.joint is None else reorder_state(beams.scorer_state, rows_device),
                came_from=beams.came_from.index_select(0, rows),
            )
        self.backpointers.append(beams.came_from)
        return beams

    def results(self) -> list[list[Hypothesis]]:
        """Each item's ``n_best`` finished hypotheses, best first (its fallback when none finished)."""
        results = []
        for item, ended in enumerate(self.ended):
            chosen = sorted(ended, key=lambda e: e.score, reverse=True)[: self.n_best]
            chosen = chosen or [self.fallback[item]]
            results.append([self._hypothesis(e) for e in chosen])
        return results

    def _hypothesis(self, ended: _Ended) -> Hypothesis:
        return Hypothesis(
            tokens=ended.tokens,
            score=ended.score,
            log_prob=ended.log_prob,
            attention=self._attention(ended),
            finished=ended.finished,
        )

    def _attention(self, ended: _Ended) -> Tensor | None:
        """Follow the back-pointers from ``ended`` to step 1, picking that hypothesis's attention rows."""
        if not self.attention_steps:
            return None
        rows = [0] * ended.step
        row = ended.row
        for step in range(ended.step, 0, -1):
            rows[step - 1] = row
            if step > 1:
                row = int(self.backpointers[step - 2][row])  # the row at step - 1 this prefix came from
        return torch.stack([self.attention_steps[s][r] for s, r in enumerate(rows)])  # (steps, ...)


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
    device = infer_device(state, device)
    joint = None
    if ctc_scorer is not None and ctc_weight > 0.0:
        pre_beam = pre_beam if pre_beam is not None else math.ceil(1.5 * beam_size)
        joint = _JointScore(ctc_scorer, weight=ctc_weight, pre_beam=pre_beam, device=device)
    search = _Search(
        resolve_max_len(max_len, batch_size),  # (B,) on the CPU
        beam_size=beam_size,
        eos_id=eos_id,
        min_len=min_len,
        n_best=n_best,
        length=functools.partial(length_normaliser, length_penalty=length_penalty, length_norm=length_norm),
        joint=joint,
        device=device,
    )
    beams = search.start(state, batch_size=batch_size, bos_id=bos_id)
    for step in range(1, int(search.limits.max()) + 1):
        out = step_fn(beams.tokens, beams.state)
        step_scores, scorer_candidates = search.score(beams, out, step)
        candidates = search.expand(beams, step_scores)
        search.finish(beams, candidates, step)
        beams = search.select(beams, candidates, out.state, scorer_candidates)
        stopped = search.stop(beams, step)
        if bool(stopped.all()):
            break
        beams = search.drop(beams, stopped)
    results = search.results()
    return results if return_all else [hyps[0] for hyps in results]
