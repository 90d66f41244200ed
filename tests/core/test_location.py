"""LocationAwareAttention (Chorowski et al. 2015)."""

import pytest
import torch

from multiattn.attention.location import LocationAwareAttention
from multiattn.masks import lengths_to_mask
from multiattn.recording import record_attention
from tests.helpers.gradients import assert_every_parameter_learns

B, S, DQ, DK, A = 2, 12, 5, 6, 8


def make(cumulative: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    module = LocationAwareAttention(
        query_dim=DQ, key_dim=DK, attn_dim=A, conv_channels=4, kernel_size=5, cumulative=cumulative
    )
    query, keys = torch.randn(B, DQ), torch.randn(B, S, DK)
    prev = torch.softmax(torch.randn(B, S), -1)
    return module, query, keys, prev


def test_shapes_mask_and_sum():
    module, query, keys, prev = make()
    mask = lengths_to_mask(torch.tensor([S, 5]), S)
    context, weights = module(query, keys, prev * mask, mask=mask)
    assert context.shape == (B, DK) and weights.shape == (B, S)
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    _, empty = module(query, keys, prev, mask=torch.zeros(B, S, dtype=torch.bool))
    assert torch.all(empty == 0)


def test_default_hyperparameters_match_paper_setup():
    module = LocationAwareAttention(query_dim=DQ, key_dim=DK, attn_dim=A)
    assert module.location_conv.out_channels == 10 and module.location_conv.kernel_size == (31,)
    context, weights = module(torch.randn(B, DQ), torch.randn(B, S, DK), torch.zeros(B, S))
    assert weights.shape == (B, S)


def test_previous_weights_change_the_output():
    module, query, keys, prev = make()
    _, weights_a = module(query, keys, prev)
    shifted = torch.zeros(B, S)
    shifted[:, -1] = 1.0
    _, weights_b = module(query, keys, shifted)
    assert not torch.allclose(weights_a, weights_b, atol=1e-4)


def test_cumulative_option():
    module, query, keys, prev = make(cumulative=True)
    assert module.location_conv.in_channels == 2
    _, weights_a = module(query, keys, prev, cumulative_weights=prev)
    _, weights_b = module(query, keys, prev, cumulative_weights=3 * prev)
    assert not torch.allclose(weights_a, weights_b, atol=1e-4)
    with pytest.raises(ValueError, match="cumulative_weights"):
        module(query, keys, prev)


def test_recording_parity_axes_and_precompute():
    module, query, keys, prev = make()
    off = module(query, keys, prev)
    with record_attention(module) as rec:
        on = module(query, keys, prev, keys_proj=module.precompute(keys))
    torch.testing.assert_close(on[0], off[0])
    torch.testing.assert_close(on[1], off[1])
    (entry,) = rec[""]
    assert entry.axes == ("batch", "frame") and entry.weights.shape == (B, S)


def test_every_parameter_gets_a_gradient_and_bf16():
    module, query, keys, prev = make()
    context, _ = module(query, keys, prev)
    assert_every_parameter_learns(context.pow(2).sum(), module)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        context, weights = module(query, keys, prev, mask=lengths_to_mask(torch.tensor([S, 0]), S))
    assert torch.isfinite(context).all() and torch.isfinite(weights).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="kernel_size"):
        LocationAwareAttention(query_dim=DQ, key_dim=DK, attn_dim=A, kernel_size=4)
    module, query, keys, prev = make()
    with pytest.raises(ValueError, match="prev_weights"):
        module(query, keys, prev[:, :-1])
