"""CTC prefix scoring against brute force over all alignments, and joint CTC/attention search."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from multiattn.decoding import CTCPrefixScorer, StepOutput, beam_search, ctc_greedy_decode

BLANK, EOS = 0, 4  # CTC labels 1..3; EOS shares the vocabulary but CTC never emits it
LABELS = (1, 2, 3)
NEG_INF = float("-inf")


def random_ctc(seed: int, batch: int, frames: int, vocab: int = 5) -> Tensor:
    torch.manual_seed(seed)
    logits = torch.randn(batch, frames, vocab) * 1.5
    logits[..., EOS] = NEG_INF
    return torch.log_softmax(logits, dim=-1)


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, previous = [], None
    for symbol in path:
        if symbol != previous and symbol != BLANK:
            out.append(symbol)
        previous = symbol
    return tuple(out)


def brute_force(log_probs: Tensor) -> dict[tuple[int, ...], float]:
    """log p(labels) for every label sequence, summing all alignments of ``log_probs (T, V)``."""
    frames = log_probs.shape[0]
    paths = torch.tensor(list(itertools.product((BLANK, *LABELS), repeat=frames)))  # (4^T, T)
    path_scores = log_probs[torch.arange(frames), paths].sum(dim=1)  # (4^T,)
    totals: dict[tuple[int, ...], list[float]] = {}
    for path, score in zip(paths.tolist(), path_scores.tolist()):
        totals.setdefault(collapse(tuple(path)), []).append(score)
    return {labels: float(torch.logsumexp(torch.tensor(s), 0)) for labels, s in totals.items()}


def brute_prefix(totals: dict[tuple[int, ...], float], prefix: tuple[int, ...]) -> float:
    scores = [s for labels, s in totals.items() if labels[: len(prefix)] == prefix]
    return float(torch.logsumexp(torch.tensor(scores), 0)) if scores else NEG_INF


def state_for(scorer: CTCPrefixScorer, prefix: tuple[int, ...]):
    """The scorer state of ``prefix`` for every utterance, built one token at a time."""
    state = scorer.initial_state()
    rows = torch.arange(state.last.shape[0])
    for token in prefix:
        _, candidates = scorer.score(state, torch.tensor([[token]]).expand(len(rows), 1))
        state = scorer.select(candidates, rows, torch.full_like(rows, token))
    return state


def scores_of(scorer: CTCPrefixScorer, prefix: tuple[int, ...]) -> Tensor:
    """``(B, 4)`` log psi of prefix + c for c in 1, 2, 3 and of prefix + EOS."""
    state = state_for(scorer, prefix)
    candidates = torch.tensor([[*LABELS, EOS]]).expand(state.last.shape[0], 4)
    _, scored = scorer.score(state, candidates)
    return scored.scores


PREFIXES = [p for length in range(3) for p in itertools.product(LABELS, repeat=length)]


def test_prefix_and_full_scores_equal_brute_force() -> None:
    lengths = torch.tensor([5, 3, 4])
    log_probs = random_ctc(0, batch=3, frames=5)
    scorer = CTCPrefixScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    totals = [brute_force(log_probs[b, : int(lengths[b])]) for b in range(3)]
    for prefix in PREFIXES:
        scores = scores_of(scorer, prefix)
        for b in range(3):
            expected = [brute_prefix(totals[b], (*prefix, c)) for c in LABELS]
            expected.append(totals[b].get(prefix, NEG_INF))  # EOS: exactly this sequence
            torch.testing.assert_close(scores[b], torch.tensor(expected), atol=1e-4, rtol=1e-4)
    # The empty prefix has probability one, and some prefixes are impossible in 3 frames.
    assert float(state_for(scorer, ()).prefix_score[0]) == 0.0
    assert scores_of(scorer, (1, 1))[1, 0] == NEG_INF


def test_blank_candidate_scores_minus_inf_and_delta_is_a_difference() -> None:
    log_probs = random_ctc(1, batch=2, frames=4)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([4, 4]), blank_id=BLANK, eos_id=EOS)
    state = state_for(scorer, (2,))
    delta, scored = scorer.score(state, torch.tensor([[BLANK, 1, 2]]).expand(2, 3))
    assert bool((scored.scores[:, 0] == NEG_INF).all())
    torch.testing.assert_close(delta[:, 1:], scored.scores[:, 1:] - state.prefix_score[:, None])
    assert bool((delta[:, 1:] <= 1e-6).all())  # a longer prefix is never more probable


def test_batched_equals_one_utterance_at_a_time() -> None:
    lengths = torch.tensor([6, 2, 4])
    log_probs = random_ctc(2, batch=3, frames=6)
    batched = CTCPrefixScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    for prefix in [(), (1,), (2, 2), (3, 1, 2)]:
        together = scores_of(batched, prefix)
        for b in range(3):
            alone_scorer = CTCPrefixScorer(
                log_probs[b : b + 1, : int(lengths[b])], lengths[b : b + 1], blank_id=BLANK, eos_id=EOS
            )
            torch.testing.assert_close(
                together[b : b + 1], scores_of(alone_scorer, prefix), atol=1e-5, rtol=1e-5
            )


def test_ctc_greedy_decode_collapses_repeats_and_blanks() -> None:
    paths = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [3, 0, 3, 3, 0, 2, 1, 1]])
    log_probs = torch.log_softmax(nn.functional.one_hot(paths, 5).float() * 5.0, dim=-1)
    assert ctc_greedy_decode(log_probs, torch.tensor([8, 8]), blank_id=0) == [[1, 1, 2], [3, 3, 2, 1]]
    assert ctc_greedy_decode(log_probs, torch.tensor([4, 3]), blank_id=0) == [[1, 1], [3, 3]]


class RandomDecoder(nn.Module):
    """A random GRU decoder over the CTC vocabulary (blank 0, labels, EOS = BOS = 4)."""

    def __init__(self, vocab_size: int = 5, hidden_dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_dim)
        self.cell = nn.GRUCell(hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def step(self, tokens: Tensor, hidden: Tensor) -> StepOutput:
        hidden = self.cell(self.embed(tokens[:, -1]), hidden)
        logits = self.out(hidden)
        logits[:, BLANK] = NEG_INF  # the decoder never emits blank
        return StepOutput(torch.log_softmax(logits, dim=-1), hidden, None)


def joint_setup(seed: int, batch: int = 3, frames: int = 8):
    torch.manual_seed(seed)
    decoder = RandomDecoder().eval()
    hidden = torch.randn(batch, 8)
    lengths = torch.tensor([frames, frames - 3, frames - 1][:batch])
    return decoder, hidden, random_ctc(seed + 10, batch=batch, frames=frames), lengths


def test_ctc_weight_zero_equals_attention_only() -> None:
    decoder, hidden, log_probs, lengths = joint_setup(3)
    common = dict(batch_size=3, beam_size=3, bos_id=EOS, eos_id=EOS, max_len=6)
    plain = beam_search(decoder.step, hidden, **common)
    scorer = CTCPrefixScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    joint = beam_search(decoder.step, hidden, ctc_scorer=scorer, ctc_weight=0.0, **common)
    assert [h.tokens for h in plain] == [h.tokens for h in joint]
    assert [h.score for h in plain] == [h.score for h in joint]


def test_ctc_weight_one_returns_the_clear_ctc_answer() -> None:
    paths = torch.tensor([[0, 2, 2, 0, 3, 1, 1, 0], [1, 0, 1, 3, 3, 0, 2, 0], [3, 3, 0, 0, 2, 0, 0, 0]])
    logits = nn.functional.one_hot(paths, 5).float() * 4.0
    logits[..., EOS] = NEG_INF
    log_probs = torch.log_softmax(logits, dim=-1)
    lengths = torch.tensor([8, 8, 5])
    expected = ctc_greedy_decode(log_probs, lengths, blank_id=BLANK)
    decoder, hidden, _, _ = joint_setup(4)
    scorer = CTCPrefixScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    hyps = beam_search(
        decoder.step, hidden, batch_size=3, beam_size=4, bos_id=EOS, eos_id=EOS, max_len=lengths + 1,
        ctc_scorer=scorer, ctc_weight=1.0,
    )  # fmt: skip
    assert [h.tokens for h in hyps] == expected == [[2, 3, 1], [1, 1, 3, 2], [3, 2]]
    assert all(h.finished for h in hyps)
    attention_only = beam_search(
        decoder.step, hidden, batch_size=3, beam_size=4, bos_id=EOS, eos_id=EOS, max_len=9
    )
    assert [h.tokens for h in attention_only] != expected  # the decoder alone does not know it


@pytest.mark.parametrize("ctc_weight", [0.3, 0.7])
def test_joint_log_prob_is_the_weighted_sum_of_both_models(ctc_weight: float) -> None:
    decoder, hidden, log_probs, lengths = joint_setup(5)
    scorer = CTCPrefixScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    hyps = beam_search(
        decoder.step, hidden, batch_size=3, beam_size=3, bos_id=EOS, eos_id=EOS, max_len=lengths,
        ctc_scorer=scorer, ctc_weight=ctc_weight, pre_beam=3,
    )  # fmt: skip
    for b, hyp in enumerate(hyps):
        assert hyp.finished and math.isfinite(hyp.log_prob)
        sequence = [*hyp.tokens, EOS]
        attention, state, tokens = 0.0, hidden[b : b + 1], torch.tensor([[EOS]])
        with torch.no_grad():
            for token in sequence:
                out = decoder.step(tokens, state)
                attention += float(out.log_probs[0, token])
                state, tokens = out.state, torch.cat([tokens, torch.tensor([[token]])], 1)
        ctc_full = brute_force(log_probs[b, : int(lengths[b])]).get(tuple(hyp.tokens), NEG_INF)
        expected = (1 - ctc_weight) * attention + ctc_weight * ctc_full
        assert hyp.log_prob == pytest.approx(expected, abs=1e-4)


class SpyScorer(CTCPrefixScorer):
    """Records the candidates the search asks the scorer about."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[Tensor] = []

    def score(self, state, candidates):
        self.asked.append(candidates.clone())
        return super().score(state, candidates)


def test_partial_scoring_asks_only_the_attention_pre_beam() -> None:
    decoder, hidden, log_probs, lengths = joint_setup(6)
    scorer = SpyScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    common = dict(batch_size=3, bos_id=EOS, eos_id=EOS, max_len=5, ctc_scorer=scorer)
    beam_search(decoder.step, hidden, beam_size=2, ctc_weight=0.5, **common)
    # ceil(1.5 * 2) of V = 5 per hypothesis: step 1 scores each item's empty prefix (3 rows),
    # later steps 2 rows per item still searched
    assert scorer.asked[0].shape == (3, 3)
    assert all(c.shape[1] == 3 and c.shape[0] in (2, 4, 6) for c in scorer.asked[1:])
    first = decoder.step(torch.full((3, 1), EOS), hidden).log_probs.topk(3, dim=1).indices
    assert torch.equal(scorer.asked[0], first)  # step 1: the attention's top 3 of each item
    scorer.asked.clear()
    beam_search(decoder.step, hidden, beam_size=2, ctc_weight=1.0, **common)
    assert all(c.shape[1] == 5 for c in scorer.asked)  # attention ignored: every token scored
    with pytest.raises(ValueError, match="ctc_scorer"):
        beam_search(decoder.step, hidden, beam_size=2, ctc_weight=0.5, **{**common, "ctc_scorer": None})
