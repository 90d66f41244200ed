"""SoftSpatialAttention, the doubly stochastic penalty (Show, Attend and Tell) and the attention entropy."""

import pytest
import torch

from multiattn.attention.spatial import (
    SoftSpatialAttention,
    SpatialAttentionOutput,
    attention_entropy,
    attention_region_nll,
    doubly_stochastic_penalty,
    step_contexts,
)
from multiattn.recording import record_attention
from tests.helpers.gradients import assert_every_parameter_learns

B, C, H, W, DH, A = 2, 6, 3, 4, 5, 7


def make(gate: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    module = SoftSpatialAttention(feature_dim=C, hidden_dim=DH, attn_dim=A, gate=gate)
    return module, torch.randn(B, C, H, W), torch.randn(B, DH)


def test_shapes_gate_and_flat_input_agree():
    module, features, hidden = make()
    out = module(features, hidden)
    assert isinstance(out, SpatialAttentionOutput)
    assert out.context.shape == (B, C) and out.weights.shape == (B, H, W) and out.gate.shape == (B, 1)
    torch.testing.assert_close(out.weights.sum((1, 2)), torch.ones(B))
    flat = features.flatten(2).transpose(1, 2)  # (B, H*W, C)
    expected = out.gate * torch.einsum("bn,bnc->bc", out.weights.flatten(1), flat)
    torch.testing.assert_close(out.context, expected)
    out_flat = module(flat, hidden, grid_hw=(H, W), features_proj=module.precompute(flat, grid_hw=(H, W)))
    torch.testing.assert_close(out_flat.context, out.context)
    torch.testing.assert_close(out_flat.weights, out.weights)


def test_query_bias_adds_to_the_hidden_projection_and_leaves_the_gate():
    module, features, hidden = make(seed=3)
    bias = torch.randn(B, A)
    out = module(features, hidden, query_bias=bias)
    expected = module.attend(features, module.hidden_proj(hidden) + bias, module.gate_proj(hidden))
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(out.weights, module(features, hidden).weights)
    with pytest.raises(ValueError, match="query_bias"):
        module(features, hidden, query_bias=torch.zeros(B, A + 1))


def test_no_gate_gives_unit_gate():
    module, features, hidden = make(gate=False)
    out = module(features, hidden)
    assert torch.all(out.gate == 1)
    torch.testing.assert_close(out.context, torch.einsum("bhw,bchw->bc", out.weights, features))


def test_mask_and_empty_rows():
    module, features, hidden = make()
    mask = torch.ones(B, H, W, dtype=torch.bool)
    mask[0, :, -1] = False
    mask[1] = False
    out = module(features, hidden, mask=mask)
    assert torch.all(out.weights[~mask] == 0)
    torch.testing.assert_close(out.weights[0].sum(), torch.tensor(1.0))
    assert torch.all(out.weights[1] == 0) and torch.all(out.context[1] == 0)
    out_flat_mask = module(features, hidden, mask=mask.flatten(1))
    torch.testing.assert_close(out_flat_mask.weights, out.weights)


def test_recording_parity_and_axes():
    module, features, hidden = make()
    off = module(features, hidden)
    with record_attention(module) as rec:
        on = module(features, hidden)
    for a, b in zip(on, off):
        torch.testing.assert_close(a, b)
    (entry,) = rec[""]
    assert entry.axes == ("batch", "grid_h", "grid_w") and entry.weights.shape == (B, H, W)
    assert entry.meta["grid"] == (H, W)


def test_gradients_and_bf16():
    module, features, hidden = make()
    assert_every_parameter_learns(module(features, hidden).context.pow(2).sum(), module)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(features, hidden, mask=torch.zeros(B, H * W, dtype=torch.bool))
    assert all(torch.isfinite(t).all() for t in out)


def test_bad_shapes_raise():
    module, features, hidden = make()
    with pytest.raises(ValueError, match="grid_hw"):
        module(features.flatten(2).transpose(1, 2), hidden)
    with pytest.raises(ValueError, match="features"):
        module(torch.randn(B, C + 1, H, W), hidden)
    with pytest.raises(ValueError, match="hidden"):
        module(features, torch.randn(B, DH + 1))
    with pytest.raises(ValueError, match="features"):
        module(torch.randn(B, H * W, C), hidden, grid_hw=(H, W + 1))


def test_doubly_stochastic_penalty_hand_computed():
    # Item 0: 2 valid steps over 2 cells: sums per cell (0.5+0.25, 0.5+0.75) = (0.75, 1.25)
    # -> 0.0625 + 0.0625 = 0.125. Step 2 is padding (its weights must be ignored).
    # Item 1: 1 valid step (1, 0) -> (0)^2 + (1)^2 = 1. Mean over the batch: 0.5625.
    weights = torch.tensor(
        [
            [[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]],
            [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]],
        ]
    )
    lengths = torch.tensor([2, 1])
    penalty = doubly_stochastic_penalty(weights, lengths)
    torch.testing.assert_close(penalty, torch.tensor(0.5625))
    # All steps counted without lengths: item 0 sums (1.75, 1.25) -> 0.5625 + 0.0625; item 1 (1, 2) -> 1.
    torch.testing.assert_close(doubly_stochastic_penalty(weights), torch.tensor((0.625 + 1.0) / 2))
    # (B, T, H, W) layout gives the same value.
    torch.testing.assert_close(doubly_stochastic_penalty(weights.view(2, 3, 1, 2), lengths), penalty)
    # Cell mask drops cells; here item 1's second cell (the only non-zero term).
    cell_mask = torch.tensor([[True, True], [True, False]])
    torch.testing.assert_close(
        doubly_stochastic_penalty(weights, lengths, mask=cell_mask), torch.tensor(0.0625)
    )
    with pytest.raises(ValueError, match="lengths"):
        doubly_stochastic_penalty(weights, torch.tensor([4, 1]))


def test_attention_entropy_hand_computed():
    # Item 0: steps (0.5, 0.5) -> log 2 and (1, 0) -> 0 (a zero weight adds nothing); step 3 is
    # padding (uniform over 4 cells, log 4, must be ignored). Item 1: one valid step (0.25 x 4) -> log 4.
    weights = torch.tensor(
        [
            [[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]],
            [[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
        ],
        requires_grad=True,
    )
    lengths = torch.tensor([2, 1])
    log2, log4 = torch.tensor(2.0).log(), torch.tensor(4.0).log()
    entropy = attention_entropy(weights, lengths)
    torch.testing.assert_close(entropy, (log2 + 0.0 + log4) / 3)
    # Every step counted without lengths (6 steps).
    torch.testing.assert_close(attention_entropy(weights), (log2 + log4 + log4) / 6)
    torch.testing.assert_close(attention_entropy(weights.view(2, 3, 2, 2), lengths), entropy)
    entropy.backward()  # finite at the zero weights, zero for the padded step
    assert torch.isfinite(weights.grad).all() and weights.grad[0, 2].abs().sum() == 0
    with pytest.raises(ValueError, match="lengths"):
        attention_entropy(weights, torch.tensor([4, 1]))
    # Selected steps only: item 0's first step (log 2) and item 1's first (log 4); item 1's second
    # step is selected but padding, so it stays out.
    steps = torch.tensor([[True, False, True], [True, True, False]])
    torch.testing.assert_close(attention_entropy(weights, lengths, steps), (log2 + log4) / 2)
    torch.testing.assert_close(attention_entropy(weights, None, steps), (log2 + log4 + 0.0 + log4) / 4)
    assert attention_entropy(weights, lengths, torch.zeros(2, 3, dtype=torch.bool)) == 0
    with pytest.raises(ValueError, match="steps"):
        attention_entropy(weights, lengths, torch.ones(2, 2, dtype=torch.bool))


def test_grids_shared_by_groups_of_rows_equal_repeated_grids():
    torch.manual_seed(0)
    attention = SoftSpatialAttention(feature_dim=6, hidden_dim=5, attn_dim=4).eval()
    features = torch.randn(3, 6, 2, 3)  # (G, C, H, W)
    hidden = torch.randn(6, 5)  # (G * K, Dh), K = 2
    mask = torch.rand(3, 2, 3) > 0.3
    mask[:, 0, 0] = True
    repeated = attention(features.repeat_interleave(2, 0), hidden, mask=mask.repeat_interleave(2, 0))
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            shared = attention(features, hidden, mask=mask)
        for mine, theirs in zip(shared, repeated):
            torch.testing.assert_close(mine, theirs)
    with pytest.raises(ValueError, match="equal groups"):
        attention(features[:2].flatten(2).transpose(1, 2), torch.randn(5, 5), grid_hw=(2, 3))


def test_attention_region_nll_is_minus_log_the_mass_inside():
    # Item 0 step 0: all weight in the region (0); step 1: half of it on a half-covered cell (-log 0.25);
    # step 2 not selected. Item 1: no step selected.
    weights = torch.tensor(
        [
            [[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
            [[0.25, 0.25, 0.25, 0.25]] * 3,
        ],
        requires_grad=True,
    )
    regions = torch.zeros(2, 3, 4)
    regions[0, 0, 0] = 1.0
    regions[0, 1, :2] = torch.tensor([0.5, 0.0])
    steps = torch.tensor([[True, True, False], [False, False, False]])
    loss = attention_region_nll(weights, regions, steps)
    torch.testing.assert_close(loss, -torch.tensor(0.25).log() / 2)
    torch.testing.assert_close(
        attention_region_nll(weights.view(2, 3, 2, 2), regions.view(2, 3, 2, 2), steps), loss
    )
    loss.backward()  # only the selected steps' weights, and more weight inside lowers it
    assert (
        weights.grad[0, 1, 0] < 0 and weights.grad[0, 2].abs().sum() == 0 and weights.grad[1].abs().sum() == 0
    )
    none = attention_region_nll(weights, regions, torch.zeros(2, 3, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad
    with pytest.raises(ValueError, match="steps"):
        attention_region_nll(weights, regions, steps[:, :2])


def test_step_contexts_are_the_ungated_contexts_of_each_step():
    module, features, _ = make(gate=True)
    hiddens = torch.randn(3, B, DH)  # three steps
    outputs = [module(features, hidden) for hidden in hiddens]
    weights = torch.stack([out.weights for out in outputs], dim=1)  # (B, 3, H, W)
    contexts = step_contexts(weights, features)
    assert contexts.shape == (B, 3, C)
    for step, out in enumerate(outputs):  # the module's context is beta times the attended annotation
        torch.testing.assert_close(out.gate * contexts[:, step], out.context)
    torch.testing.assert_close(step_contexts(weights.flatten(2), features), contexts)
    # A one-hot map picks its cell's annotation.
    one_hot = torch.zeros(B, 1, H, W)
    one_hot[:, 0, 2, 1] = 1.0
    torch.testing.assert_close(step_contexts(one_hot, features)[:, 0], features[:, :, 2, 1])
    with pytest.raises(ValueError, match="weights: expected shape"):
        step_contexts(weights[..., :-1], features)
