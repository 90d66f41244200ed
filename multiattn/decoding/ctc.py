"""CTC prefix scoring for joint CTC/attention decoding, and CTC greedy decoding.

Watanabe et al. 2017, "Hybrid CTC/Attention Architecture for End-to-End Speech Recognition"
(Algorithm 2). For a prefix ``g`` the forward variables ``r^n_t(g)`` / ``r^b_t(g)`` are the
probabilities that frames ``1..t`` collapse to ``g`` with frame ``t`` non-blank / blank. For a
candidate ``h = g + c``::

    phi_t    = r^b_t(g) + (0 if c == last(g) else r^n_t(g))
    r^n_t(h) = (r^n_{t-1}(h) + phi_{t-1}) * y^c_t        (r^n_1(h) = y^c_1 if g is empty)
    r^b_t(h) = (r^b_{t-1}(h) + r^n_{t-1}(h)) * y^blank_t
    psi(h)   = r^n_1(h) + sum_t phi_{t-1} * y^c_t           (the prefix probability)
    psi(g + EOS) = r^n_T(g) + r^b_T(g)                       (the full-sequence probability)

everything in log space. ``psi(h)`` is the total probability of all alignments whose collapsed
label sequence starts with ``h``. All hypotheses of all utterances are scored together: frames
past an utterance's length are padded with ``log y^blank = 0`` and ``-inf`` elsewhere, so its
forward variables carry its final values unchanged to the last padded frame.

Shape legend: ``B`` utterances, ``T`` frames, ``V`` vocabulary (shared with the decoder, blank
included), ``N`` hypotheses (rows), ``P`` candidate tokens per hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from multiattn.masks import check_lengths, check_shape

__all__ = ["CTCPrefixState", "CTCCandidates", "CTCPrefixScorer", "ctc_greedy_decode"]

NEG_INF = float("-inf")


@dataclass
class CTCPrefixState:
    """The CTC state of ``N`` hypothesis prefixes.

    Attributes:
        forward: ``(T, 2, N)`` log ``r^n_t`` (index 0) and ``r^b_t`` (index 1) of each prefix.
        prefix_score: ``(N,)`` log ``psi`` of each prefix (``0`` for the empty prefix).
        last: ``(N,)`` the prefix's last token, ``-1`` for the empty prefix.
        length: ``(N,)`` the prefix length (tokens after BOS).
        item: ``(N,)`` the utterance each hypothesis belongs to.
    """

    forward: Tensor
    prefix_score: Tensor
    last: Tensor
    length: Tensor
    item: Tensor

    def reorder(self, indices: Tensor) -> CTCPrefixState:
        """Keep hypotheses ``indices`` ``(M,)`` (used by ``expand_state`` / ``reorder_state``)."""
        indices = indices.to(self.last.device)
        return CTCPrefixState(
            forward=self.forward.index_select(2, indices),
            prefix_score=self.prefix_score.index_select(0, indices),
            last=self.last.index_select(0, indices),
            length=self.length.index_select(0, indices),
            item=self.item.index_select(0, indices),
        )


@dataclass
class CTCCandidates:
    """Scores and forward variables of ``P`` candidate extensions of ``N`` prefixes.

    Attributes:
        forward: ``(T, 2, N, P)`` forward variables of each extended prefix.
        scores: ``(N, P)`` log ``psi`` of each extended prefix (full-sequence score for EOS).
        tokens: ``(N, P)`` the candidate tokens.
        parent: the state of the ``N`` prefixes.
    """

    forward: Tensor
    scores: Tensor
    tokens: Tensor
    parent: CTCPrefixState


class CTCPrefixScorer:
    """Batched CTC prefix scorer over utterances and beams (a ``PrefixScorer`` for ``beam_search``).

    Args:
        log_probs: ``(B, T, V)`` CTC log-softmax outputs.
        lengths: ``(B,)`` valid frames per utterance.
        blank_id: the CTC blank (never a candidate: it scores ``-inf``).
        eos_id: the end token; its score is the full-sequence probability of the prefix.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, *, blank_id: int = 0, eos_id: int) -> None:
        check_shape("log_probs", log_probs, (None, None, None))
        B, T, V = log_probs.shape
        check_lengths(lengths, B, T)
        if not (0 <= blank_id < V and 0 <= eos_id < V) or blank_id == eos_id:
            raise ValueError(f"blank_id {blank_id} and eos_id {eos_id} must differ and lie in [0, {V})")
        self.blank_id, self.eos_id = blank_id, eos_id
        self.device = log_probs.device
        frames = torch.arange(T, device=self.device)[None, :]  # (1, T)
        padding = frames >= lengths.to(self.device)[:, None]  # (B, T)
        x = log_probs.detach().float().masked_fill(padding[:, :, None], NEG_INF)  # (B, T, V)
        x[:, :, blank_id] = x[:, :, blank_id].masked_fill(padding, 0.0)
        self.x = x
        self.num_frames = T

    def initial_state(self) -> CTCPrefixState:
        """The empty prefix of each of the ``B`` utterances: ``r^b_t = prod_{s<=t} y^blank_s``."""
        B = self.x.shape[0]
        blank_run = self.x[:, :, self.blank_id].cumsum(dim=1).transpose(0, 1)  # (T, B)
        forward = torch.stack([torch.full_like(blank_run, NEG_INF), blank_run], dim=1)  # (T, 2, B)
        return CTCPrefixState(
            forward=forward,
            prefix_score=torch.zeros(B, device=self.device),
            last=torch.full((B,), -1, dtype=torch.long, device=self.device),
            length=torch.zeros(B, dtype=torch.long, device=self.device),
            item=torch.arange(B, device=self.device),
        )

    def score(self, state: CTCPrefixState, candidates: Tensor) -> tuple[Tensor, CTCCandidates]:
        """Score candidate tokens for every prefix.

        Args:
            state: the ``N`` prefixes.
            candidates: ``(N, P)`` long token ids.

        Returns:
            ``delta (N, P)`` = ``log psi(g + c) - log psi(g)`` (``-inf`` where the prefix is already
            impossible), and the :class:`CTCCandidates` to pass to :meth:`select`.
        """
        N = state.last.shape[0]
        check_shape("candidates", candidates, (N, None))
        T = self.num_frames
        candidates = candidates.to(self.device)
        is_eos = candidates == self.eos_id
        is_blank = candidates == self.blank_id
        # A prefix of length L cannot be extended before frame L (phi and r of earlier frames are
        # -inf), so all frame-wise work starts at frame ``first``: exact, and about half the work.
        start = max(int(state.length.min()), 1)
        first = start - 1
        # Emission log-probs of each candidate in its own utterance; advanced indices around a
        # slice put the index dims first: (N, P, T').
        emit = self.x[state.item[:, None], first:, candidates].permute(2, 0, 1)  # (T', N, P), T' = T - first
        emit = emit.masked_fill((is_eos | is_blank)[None], NEG_INF)
        blank = self.x[state.item, first:, self.blank_id].transpose(0, 1)  # (T', N)

        r_n, r_b = state.forward[first:, 0], state.forward[first:, 1]  # (T', N) each
        repeat = candidates == state.last[:, None]  # (N, P): a repeat needs a blank in between
        phi = torch.where(repeat[None], r_b[:, :, None], torch.logaddexp(r_n, r_b)[:, :, None])  # (T', N, P)

        forward = emit.new_full((T, 2, *candidates.shape), NEG_INF)  # (T, 2, N, P)
        if first == 0:
            empty = (state.length == 0)[:, None]  # (N, 1)
            forward[0, 0] = torch.where(empty, emit[0], NEG_INF)
        for t in range(start, T):  # frame t is row t - first of emit / blank / phi
            u = t - first
            forward[t, 0] = torch.logaddexp(forward[t - 1, 0], phi[u - 1]) + emit[u]
            forward[t, 1] = torch.logaddexp(forward[t - 1, 0], forward[t - 1, 1]) + blank[u, :, None]
        new_label_terms = phi[:-1] + emit[1:]  # (T' - 1, N, P): the new label first emitted at frame t
        if first == 0:
            new_label_terms = torch.cat([forward[:1, 0], new_label_terms], dim=0)  # (T, N, P)
        scores = torch.logsumexp(new_label_terms, dim=0)  # (N, P)
        full = torch.logaddexp(
            state.forward[-1, 0], state.forward[-1, 1]
        )  # (N,) prefix probability of g + EOS
        scores = torch.where(is_eos, full[:, None], scores)
        scores = scores.masked_fill(is_blank, NEG_INF)

        previous = state.prefix_score[:, None]  # (N, 1)
        delta = torch.where(torch.isfinite(previous), scores - previous, NEG_INF)  # (N, P)
        return delta, CTCCandidates(forward=forward, scores=scores, tokens=candidates, parent=state)

    def select(self, candidate_state: CTCCandidates, rows: Tensor, tokens: Tensor) -> CTCPrefixState:
        """The state of the prefixes ``parent[rows] + tokens`` (``rows``, ``tokens``: ``(M,)``).

        A token that was not among the scored candidates of its row (possible only for
        hypotheses whose score is already ``-inf``) gets an impossible (``-inf``) state.
        """
        rows, tokens = rows.to(self.device), tokens.to(self.device)
        match = candidate_state.tokens.index_select(0, rows) == tokens[:, None]  # (M, P)
        position = match.long().argmax(dim=1)  # (M,)
        found = match.any(dim=1)  # (M,)
        forward = candidate_state.forward[:, :, rows, position]  # (T, 2, M)
        forward = forward.masked_fill(~found[None, None], NEG_INF)
        prefix_score = candidate_state.scores[rows, position].masked_fill(~found, NEG_INF)
        parent = candidate_state.parent
        return CTCPrefixState(
            forward=forward,
            prefix_score=prefix_score,
            last=tokens,
            length=parent.length.index_select(0, rows) + 1,
            item=parent.item.index_select(0, rows),
        )


def ctc_greedy_decode(log_probs: Tensor, lengths: Tensor, blank_id: int = 0) -> list[list[int]]:
    """Best-path CTC decoding: arg-max per frame, merge repeats, drop blanks (Graves et al. 2006).

    Args:
        log_probs: ``(B, T, V)`` CTC outputs (any monotone transform of probabilities).
        lengths: ``(B,)`` valid frames per utterance.
        blank_id: the blank token.

    Returns:
        One token list per utterance.
    """
    check_shape("log_probs", log_probs, (None, None, None))
    B, T, _ = log_probs.shape
    check_lengths(lengths, B, T)
    best = log_probs.argmax(dim=-1)  # (B, T)
    previous = torch.cat([best.new_full((B, 1), -1), best[:, :-1]], dim=1)  # (B, T)
    valid = torch.arange(T, device=best.device)[None, :] < lengths.to(best.device)[:, None]  # (B, T)
    keep = (best != blank_id) & (best != previous) & valid
    best, keep = best.cpu(), keep.cpu()
    return [best[b][keep[b]].tolist() for b in range(B)]
