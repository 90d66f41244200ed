"""Greedy and batched beam search: parity with greedy, batching, brute force, state, attention."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from multiattn.decoding import (
    Hypothesis,
    StepOutput,
    beam_search,
    expand_state,
    greedy_search,
    length_normaliser,
    reorder_state,
)

BOS, EOS = 0, 1


class TinyAttentionDecoder(nn.Module):
    """A random GRU decoder attending over a per-item memory: a deterministic step function."""

    def __init__(self, *, vocab_size: int, hidden_dim: int = 8, eos_bias: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_dim)
        self.cell = nn.GRUCell(hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, vocab_size)
        with torch.no_grad():
            self.out.weight.mul_(3.0)  # peaked distributions, so beams disagree with greedy
            self.out.bias[EOS] += eos_bias

    def initial_state(self, memory: Tensor) -> dict:
        return {"hidden": memory.mean(dim=1), "memory": memory}

    def step(self, tokens: Tensor, state: dict) -> StepOutput:
        hidden = self.cell(self.embed(tokens[:, -1]), state["hidden"])  # (N, H)
        weights = torch.softmax(torch.einsum("nh,nsh->ns", hidden, state["memory"]), dim=-1)  # (N, S)
        context = torch.einsum("ns,nsh->nh", weights, state["memory"])  # (N, H)
        log_probs = torch.log_softmax(self.out(hidden + context), dim=-1)
        return StepOutput(log_probs, {"hidden": hidden, "memory": state["memory"]}, weights)


def make_model(seed: int, *, vocab_size: int = 7, batch: int = 4, source_len: int = 5, eos_bias: float = 0.0):
    torch.manual_seed(seed)
    model = TinyAttentionDecoder(vocab_size=vocab_size, eos_bias=eos_bias).eval()
    memory = torch.randn(batch, source_len, 8)
    return model, memory


def replay(model: TinyAttentionDecoder, memory: Tensor, sequence: list[int]) -> tuple[float, Tensor]:
    """Teacher-force ``sequence`` (after BOS) for one item: total log-prob and per-step attention."""
    state = model.initial_state(memory[None])
    tokens = torch.tensor([[BOS]])
    total, maps = 0.0, []
    with torch.no_grad():
        for token in sequence:
            out = model.step(tokens, state)
            total += float(out.log_probs[0, token])
            maps.append(out.attention[0])
            state = out.state
            tokens = torch.cat([tokens, torch.tensor([[token]])], dim=1)
    return total, torch.stack(maps)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy(seed: int) -> None:
    model, memory = make_model(seed, eos_bias=1.0)
    common = dict(batch_size=4, bos_id=BOS, eos_id=EOS, max_len=8)
    greedy = greedy_search(model.step, model.initial_state(memory), **common)
    beam = beam_search(model.step, model.initial_state(memory), beam_size=1, length_penalty=0.0, **common)
    assert [g.tokens for g in greedy] == [b.tokens for b in beam]
    assert [g.finished for g in greedy] == [b.finished for b in beam]
    for g, b in zip(greedy, beam):
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-5)
        torch.testing.assert_close(g.attention, b.attention)


def test_beam_differs_from_greedy_somewhere() -> None:
    """Guards the parity test above: a wider beam must find better sequences on this model."""
    model, memory = make_model(3, batch=8, eos_bias=1.0)
    common = dict(batch_size=8, bos_id=BOS, eos_id=EOS, max_len=8)
    greedy = greedy_search(model.step, model.initial_state(memory), **common)
    beam = beam_search(model.step, model.initial_state(memory), beam_size=4, length_penalty=0.0, **common)
    assert all(b.log_prob >= g.log_prob - 1e-5 for g, b in zip(greedy, beam) if g.finished)
    assert any(b.log_prob > g.log_prob + 1e-4 for g, b in zip(greedy, beam))


def test_batched_equals_one_item_at_a_time() -> None:
    model, memory = make_model(4, batch=5, eos_bias=0.5)
    limits = torch.tensor([3, 6, 4, 8, 5])
    batched = beam_search(
        model.step,
        model.initial_state(memory),
        batch_size=5,
        beam_size=3,
        bos_id=BOS,
        eos_id=EOS,
        max_len=limits,
    )
    assert any(not h.finished for h in batched) or len({len(h.tokens) for h in batched}) > 1
    for item, hypothesis in enumerate(batched):
        alone = beam_search(
            model.step,
            model.initial_state(memory[item : item + 1]),
            batch_size=1,
            beam_size=3,
            bos_id=BOS,
            eos_id=EOS,
            max_len=int(limits[item]),
        )[0]
        assert hypothesis.tokens == alone.tokens
        assert hypothesis.finished == alone.finished
        assert hypothesis.score == pytest.approx(alone.score, abs=1e-5)
        assert hypothesis.log_prob == pytest.approx(alone.log_prob, abs=1e-5)
        assert len(hypothesis.tokens) <= int(limits[item])


def never_eos_step(tokens: Tensor, state: Tensor) -> StepOutput:
    logits = torch.sin(state[:, None] * 3.0 + torch.arange(5.0)[None] + tokens.shape[1])  # (N, V)
    logits[:, EOS] = float("-inf")
    return StepOutput(torch.log_softmax(logits, dim=-1), state + tokens[:, -1].float(), None)


def test_never_eos_still_returns_max_len_tokens() -> None:
    state = torch.tensor([0.1, 0.7])
    limits = torch.tensor([4, 6])
    for hyps in (
        beam_search(never_eos_step, state, batch_size=2, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=limits),
        greedy_search(never_eos_step, state, batch_size=2, bos_id=BOS, eos_id=EOS, max_len=limits),
    ):
        assert [len(h.tokens) for h in hyps] == [4, 6]
        assert all(not h.finished and math.isfinite(h.score) for h in hyps)
        assert all(EOS not in h.tokens for h in hyps)


@pytest.mark.parametrize(("length_penalty", "length_norm"), [(0.0, "gnmt"), (1.0, "gnmt"), (1.0, "simple")])
def test_exhaustive_beam_finds_brute_force_best(length_penalty: float, length_norm: str) -> None:
    vocab, max_len = 4, 3
    model, memory = make_model(5, vocab_size=vocab, batch=2, eos_bias=0.3)
    hyps = beam_search(
        model.step,
        model.initial_state(memory),
        batch_size=2,
        beam_size=vocab**max_len,
        bos_id=BOS,
        eos_id=EOS,
        max_len=max_len,
        length_penalty=length_penalty,
        length_norm=length_norm,
        n_best=3,
        return_all=True,
    )
    words = [t for t in range(vocab) if t != EOS]
    for item in range(2):
        brute = []
        for length in range(max_len):  # finished: at most max_len - 1 tokens, then EOS
            for seq in itertools.product(words, repeat=length):
                raw, _ = replay(model, memory[item], [*seq, EOS])
                lp = length_normaliser(length + 1.0, length_penalty=length_penalty, length_norm=length_norm)
                brute.append((raw / lp, list(seq)))
        brute.sort(key=lambda pair: pair[0], reverse=True)
        assert [h.tokens for h in hyps[item]] == [seq for _, seq in brute[:3]]
        assert [h.score for h in hyps[item]] == pytest.approx([s for s, _ in brute[:3]], abs=1e-5)


class PrefixBox:
    """A state object with a ``reorder`` method that returns a new object."""

    def __init__(self, prefix: Tensor) -> None:
        self.prefix = prefix

    def reorder(self, indices: Tensor) -> PrefixBox:
        return PrefixBox(self.prefix.index_select(0, indices))


class InPlaceBox(PrefixBox):
    """A state object that reorders itself in place and returns ``None``."""

    def reorder(self, indices: Tensor) -> None:
        self.prefix = self.prefix.index_select(0, indices)


def carrying_step(tokens: Tensor, state: dict) -> StepOutput:
    """Asserts that every piece of the state carries exactly the prefix of its own row."""
    seen = tokens[:, :-1]
    assert torch.equal(state["tensor"], seen)
    assert torch.equal(state["nested"][0].prefix, seen)
    assert torch.equal(state["nested"][1].prefix, seen)
    assert state["nested"][2] is None and state["constant"] == "kept"
    torch.manual_seed(int(tokens.sum()) % 1000 + 31 * tokens.shape[1])  # depends on each prefix
    logits = torch.randn(tokens.shape[0], 6)
    logits[:, EOS] -= 1.0
    new_state = {
        "tensor": tokens.clone(),
        "nested": (PrefixBox(tokens.clone()), InPlaceBox(tokens.clone()), None),
        "constant": "kept",
    }
    return StepOutput(torch.log_softmax(logits, dim=-1), new_state, None)


def test_state_is_reordered_with_the_hypotheses() -> None:
    empty = torch.zeros(3, 0, dtype=torch.long)
    state = {"tensor": empty, "nested": (PrefixBox(empty), InPlaceBox(empty), None), "constant": "kept"}
    hyps = beam_search(carrying_step, state, batch_size=3, beam_size=4, bos_id=BOS, eos_id=EOS, max_len=7)
    assert len(hyps) == 3


def test_attention_equals_teacher_forced_replay() -> None:
    model, memory = make_model(8, batch=4, eos_bias=-0.5)  # ancestors sit in other rows here
    all_hyps = beam_search(
        model.step, model.initial_state(memory), batch_size=4, beam_size=4, bos_id=BOS, eos_id=EOS, max_len=6,
        n_best=4, return_all=True,
    )  # fmt: skip
    checked = 0
    for item, hyps in enumerate(all_hyps):
        for hypothesis in hyps:  # lower-ranked hypotheses come from other rows at earlier steps
            sequence = hypothesis.tokens + ([EOS] if hypothesis.finished else [])
            raw, maps = replay(model, memory[item], sequence)
            assert hypothesis.attention.shape == (len(sequence), memory.shape[1])
            torch.testing.assert_close(hypothesis.attention, maps)
            assert hypothesis.log_prob == pytest.approx(raw, abs=1e-5)
            checked += 1
    assert checked > 4


def table_step(table: dict[tuple[int, ...], list[float]]):
    """A step function from a table of next-token probabilities keyed by prefix (after BOS)."""

    def step(tokens: Tensor, state: None) -> StepOutput:
        rows = []
        for row in tokens[:, 1:].tolist():
            probs = table.get(tuple(row), [1e-6, 0.1, 0.45, 0.45])
            rows.append(torch.tensor(probs).log())
        return StepOutput(torch.stack(rows), None, None)

    return step


@pytest.mark.parametrize(
    ("length_penalty", "length_norm", "expected"),
    [(0.0, "gnmt", []), (1.0, "gnmt", []), (3.0, "gnmt", [2, 3]), (1.0, "simple", [2, 3])],
)
def test_length_normalisation_changes_the_winner(length_penalty, length_norm, expected) -> None:
    # Tokens: 0 BOS, 1 EOS, 2 A, 3 B. "EOS" now: 0.55; "A B EOS": 0.45 * 0.8 * 0.8 = 0.288.
    table = {(): [1e-6, 0.55, 0.45, 1e-6], (2,): [1e-6, 0.1, 0.1, 0.8], (2, 3): [1e-6, 0.8, 0.1, 0.1]}
    hyp = beam_search(
        table_step(table),
        None,
        batch_size=1,
        beam_size=2,
        bos_id=BOS,
        eos_id=EOS,
        max_len=5,
        length_penalty=length_penalty,
        length_norm=length_norm,
        device="cpu",
    )[0]
    assert hyp.tokens == expected


@pytest.mark.parametrize("beam_size", [1, 2])
def test_early_stop_waits_for_a_longer_winner(beam_size: int) -> None:
    # Mean log-prob ("simple", alpha 1): "EOS" now scores -0.598; after "A A" (raw -1.82) the
    # continuation "A A EOS" is near-certain, giving -1.88 / 5 = -0.376. Stopping early with a
    # bound from the next length instead of the length limit would wrongly keep "EOS".
    table = {
        (): [1e-6, 0.55, 0.45, 1e-6],
        (2,): [1e-6, 0.32, 0.36, 0.32],
        (2, 2): [1e-6, 0.01, 0.98, 0.01],
        (2, 2, 2): [1e-6, 0.01, 0.98, 0.01],
        (2, 2, 2, 2): [1e-6, 0.98, 0.01, 0.01],
    }
    hyp = beam_search(
        table_step(table), None, batch_size=1, beam_size=beam_size, bos_id=BOS, eos_id=EOS, max_len=6,
        length_penalty=1.0, length_norm="simple", device="cpu",
    )[0]  # fmt: skip
    assert hyp.tokens == [2, 2, 2, 2]


def test_min_len_forbids_early_eos() -> None:
    table = {(): [1e-6, 0.9, 0.05, 0.05]}
    common = dict(batch_size=1, bos_id=BOS, eos_id=EOS, max_len=5, min_len=2, device="cpu")
    assert len(beam_search(table_step(table), None, beam_size=2, **common)[0].tokens) >= 2
    assert len(greedy_search(table_step(table), None, **common)[0].tokens) >= 2


def test_expand_and_reorder_state() -> None:
    state = ({"a": torch.arange(3)}, [torch.arange(6).view(3, 2)], None, 5)
    expanded = expand_state(state, 2)
    assert expanded[0]["a"].tolist() == [0, 0, 1, 1, 2, 2]
    assert expanded[1][0][:, 0].tolist() == [0, 0, 2, 2, 4, 4]
    assert expanded[2] is None and expanded[3] == 5
    reordered = reorder_state(expanded, torch.tensor([5, 0]))
    assert reordered[0]["a"].tolist() == [2, 0]


def test_bad_step_output_shape_raises() -> None:
    def bad_step(tokens: Tensor, state: None) -> StepOutput:
        return StepOutput(torch.zeros(tokens.shape[0] + 1, 4), None, None)

    with pytest.raises(ValueError, match="log_probs"):
        beam_search(bad_step, None, batch_size=2, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=3)


def test_hypothesis_type() -> None:
    model, memory = make_model(7, batch=2)
    hyps = beam_search(
        model.step, model.initial_state(memory), batch_size=2, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=4
    )
    assert all(isinstance(h, Hypothesis) and EOS not in h.tokens for h in hyps)
    assert all(h.attention.shape[0] == len(h.tokens) + int(h.finished) for h in hyps)


def test_stopped_items_leave_the_batch() -> None:
    """Rows of items that stopped are dropped; answers and attention are unchanged by it."""
    model, memory = make_model(5, batch=4, eos_bias=-0.5)
    limits = torch.tensor([2, 7, 3, 7])
    rows_per_step: list[int] = []

    def spy(tokens: Tensor, state: dict) -> StepOutput:
        rows_per_step.append(tokens.shape[0])
        return model.step(tokens, state)

    hyps = beam_search(
        spy, model.initial_state(memory), batch_size=4, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=limits,
        n_best=2, return_all=True,
    )  # fmt: skip
    assert rows_per_step[:2] == [4, 12]  # step 1 scores each item's empty prefix, then K = 3 beams
    assert rows_per_step[2] <= 9 and rows_per_step[-1] <= 6  # item 0 gone after step 2, item 2 after 3
    for item, item_hyps in enumerate(hyps):
        alone = beam_search(
            model.step, model.initial_state(memory[item : item + 1]), batch_size=1, beam_size=3, bos_id=BOS,
            eos_id=EOS, max_len=int(limits[item]), n_best=2, return_all=True,
        )[0]  # fmt: skip
        assert [h.tokens for h in item_hyps] == [h.tokens for h in alone]
        for hypothesis in item_hyps:
            sequence = hypothesis.tokens + ([EOS] if hypothesis.finished else [])
            raw, maps = replay(model, memory[item], sequence)
            torch.testing.assert_close(hypothesis.attention, maps)
            assert hypothesis.log_prob == pytest.approx(raw, abs=1e-5)
