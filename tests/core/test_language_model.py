"""LSTMLanguageModel and shallow fusion: incremental steps equal the full pass, padding never
counts, fusion at weight 0 is the plain search, and a fused model's preference reaches the answer."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from multiattn.decoding import FusedState, StepOutput, beam_search, greedy_search, shallow_fusion
from multiattn.language_model import LMState, LSTMLanguageModel

V, BOS, EOS = 7, 1, 1


def _model(seed: int = 0, **kwargs) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    return LSTMLanguageModel(vocab_size=V, embed_dim=8, hidden_dim=12, dropout=0.0, **kwargs).eval()


@pytest.mark.parametrize("num_layers", [1, 2])
def test_steps_equal_the_full_pass(num_layers: int) -> None:
    lm = _model(num_layers=num_layers)
    tokens = torch.randint(2, V, (3, 6))
    logits, _ = lm(tokens)  # (3, 6, V)
    state = lm.init_state(3)
    for t in range(tokens.shape[1]):
        log_probs, state = lm.step(tokens[:, t], state)
        torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), atol=1e-5, rtol=1e-5)


def test_step_with_and_without_the_input_table_and_under_autocast() -> None:
    """The search state's input table gives the same steps as the plain projection, and it is
    built from the weights of the moment (a state made after new weights sees them)."""
    lm = _model()
    tokens = torch.randint(2, V, (2, 3))
    state = lm.init_state(2)
    assert state.input_table is not None and state.input_table.shape == (V, 4 * 12)
    plain = LMState(state.hidden, state.cell, None)
    for t in range(3):
        with_table, state = lm.step(tokens[:, t], state)
        without, plain = lm.step(tokens[:, t], plain)
        torch.testing.assert_close(with_table, without, atol=1e-5, rtol=1e-5)
    lm.load_state_dict(_model(seed=9).state_dict())
    logits, _ = lm(tokens[:, :1])
    log_probs, _ = lm.step(tokens[:, 0], lm.init_state(2))
    torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, 0], -1), atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = lm.init_state(2)
    assert state.input_table.dtype == torch.float32
    assert lm.train().init_state(2).input_table is None  # training steps run forward (dropout)


def test_padding_does_not_change_the_loss() -> None:
    lm = _model()
    tokens_in = torch.tensor([[BOS, 3, 4, 0, 0], [BOS, 5, 2, 6, 3]])
    tokens_out = torch.tensor([[3, 4, EOS, -100, -100], [5, 2, 6, 3, EOS]])
    other = tokens_in.clone()
    other[0, 3:] = torch.tensor([6, 5])  # what sits in the padding differs
    assert torch.equal(lm.loss(tokens_in, tokens_out), lm.loss(other, tokens_out))
    changed = tokens_out.clone()
    changed[0, 1] = 6  # a real target differs: the loss must move
    assert not torch.equal(lm.loss(tokens_in, tokens_out), lm.loss(tokens_in, changed))


def test_state_reorder_selects_rows() -> None:
    lm = _model(num_layers=2)
    _, state = lm(torch.randint(2, V, (4, 3)))
    picked = state.reorder(torch.tensor([2, 2, 0]))
    assert isinstance(picked, LMState) and picked.hidden.shape == (2, 3, 12)
    assert torch.equal(picked.hidden[:, 0], state.hidden[:, 2]) and torch.equal(
        picked.cell[:, 2], state.cell[:, 0]
    )


def test_learns_a_fixed_sentence() -> None:
    torch.manual_seed(0)
    lm = LSTMLanguageModel(vocab_size=V, embed_dim=8, hidden_dim=16, dropout=0.0)
    sentence = torch.tensor([[BOS, 3, 5, 2, 6]])
    target = torch.tensor([[3, 5, 2, 6, EOS]])
    optimizer = torch.optim.Adam(lm.parameters(), lr=0.05)
    for _ in range(80):
        optimizer.zero_grad()
        loss = lm.loss(sentence, target)
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.05


# ----------------------------------------------------------------------------- fusion
def _decoder_step(bias: Tensor):
    """A decoder whose next-token log-probs depend on the previous token (a fixed bigram table)."""

    def step_fn(tokens: Tensor, state: Tensor) -> StepOutput:
        return StepOutput(torch.log_softmax(bias[tokens[:, -1]] + state, -1), state, None)

    return step_fn


def test_weight_zero_is_the_plain_search_and_scores_add() -> None:
    torch.manual_seed(1)
    bias = torch.randn(V, V)
    state = torch.randn(2, V) * 0.1  # (B, V): per-item offset, follows the beams
    step_fn = _decoder_step(bias)
    lm = _model(seed=3)
    kwargs = dict(batch_size=2, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=6)
    plain = beam_search(step_fn, state, **kwargs)
    fused_fn, init = shallow_fusion(step_fn, lm, lm_weight=0.0)
    fused = beam_search(fused_fn, init(state, 2), **kwargs)
    assert [h.tokens for h in plain] == [h.tokens for h in fused]
    assert [h.score for h in plain] == pytest.approx([h.score for h in fused])

    fused_fn, init = shallow_fusion(step_fn, lm, lm_weight=0.7)
    tokens = torch.tensor([[BOS, 3], [BOS, 4]])
    out = fused_fn(tokens, init(state, 2))
    lm_log_probs, _ = lm.step(tokens[:, -1], lm.init_state(2))
    torch.testing.assert_close(out.log_probs, step_fn(tokens, state).log_probs + 0.7 * lm_log_probs)
    assert isinstance(out.state, FusedState)


class _Prefers:
    """A language model that puts nearly all mass on a fixed sentence."""

    def __init__(self, sentence: list[int]) -> None:
        self.sentence = sentence

    def init_state(self, batch_size: int, *, device=None) -> Tensor:
        return torch.zeros(batch_size, dtype=torch.long)  # (N,) position in the sentence

    def step(self, last: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        log_probs = torch.full((last.shape[0], V), -20.0)
        for row, position in enumerate(state.tolist()):
            log_probs[row, self.sentence[min(position, len(self.sentence) - 1)]] = 0.0
        return log_probs, state + 1


def test_the_language_model_steers_greedy_and_beam_search() -> None:
    bias = torch.zeros(V, V)
    bias[:, 2] = 1.0  # the decoder alone prefers token 2 forever (never EOS)
    step_fn = _decoder_step(bias)
    state = torch.zeros(2, V)
    wanted = [4, 5, 3]
    lm = _Prefers(wanted + [EOS])
    fused_fn, init = shallow_fusion(step_fn, lm, lm_weight=1.0)
    for search in (greedy_search, beam_search):
        extra = {"beam_size": 3} if search is beam_search else {}
        plain = search(step_fn, state, batch_size=2, bos_id=BOS, eos_id=EOS, max_len=5, **extra)
        steered = search(fused_fn, init(state, 2), batch_size=2, bos_id=BOS, eos_id=EOS, max_len=5, **extra)
        assert all(h.tokens[0] == 2 for h in plain)
        assert [h.tokens for h in steered] == [wanted, wanted]


def test_batched_fused_search_equals_one_at_a_time() -> None:
    torch.manual_seed(2)
    bias = torch.randn(V, V)
    state = torch.randn(3, V)
    step_fn = _decoder_step(bias)
    fused_fn, init = shallow_fusion(step_fn, _model(seed=5), lm_weight=0.5)
    kwargs = dict(beam_size=4, bos_id=BOS, eos_id=EOS, max_len=7)
    batched = beam_search(fused_fn, init(state, 3), batch_size=3, **kwargs)
    for item in range(3):
        single = beam_search(fused_fn, init(state[item : item + 1], 1), batch_size=1, **kwargs)[0]
        assert single.tokens == batched[item].tokens
        assert single.score == pytest.approx(batched[item].score, abs=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="lm_weight"):
        shallow_fusion(_decoder_step(torch.zeros(V, V)), _model(), lm_weight=-1.0)
    with pytest.raises(ValueError, match="vocab_size"):
        LSTMLanguageModel(vocab_size=1)
