"""AdditiveAttention (Bahdanau 2015): shapes, masking, recording parity, gradients, bf16."""

import copy

import pytest
import torch

from multiattn.attention.additive import (
    AdditiveAttention,
    additive_energy,
    masked_softmax,
)
from multiattn.attention.compiled_energy import CompiledEnergy, active_energy_kernel, fused_energy
from multiattn.masks import lengths_to_mask
from multiattn.recording import record_attention
from tests.helpers.gradients import assert_every_parameter_learns

B, S, DQ, DK, DV, A = 3, 7, 5, 6, 4, 8


def make(seed: int = 0):
    torch.manual_seed(seed)
    module = AdditiveAttention(query_dim=DQ, key_dim=DK, attn_dim=A)
    query, keys, values = torch.randn(B, DQ), torch.randn(B, S, DK), torch.randn(B, S, DV)
    return module, query, keys, values


def test_shapes_and_normalisation():
    module, query, keys, values = make()
    context, weights = module(query, keys, values)
    assert context.shape == (B, DV) and weights.shape == (B, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    torch.testing.assert_close(context, torch.einsum("bs,bsd->bd", weights, values))
    context_keys, _ = module(query, keys)  # values default to keys
    assert context_keys.shape == (B, DK)


def test_masked_keys_get_exactly_zero_weight_and_empty_rows_are_finite():
    module, query, keys, values = make()
    mask = lengths_to_mask(torch.tensor([7, 3, 0]), S)
    context, weights = module(query, keys, values, mask=mask)
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights[:2].sum(-1), torch.ones(2))
    assert torch.all(weights[2] == 0) and torch.all(context[2] == 0)
    # Padding invariance: garbage in masked keys changes nothing.
    keys2, values2 = keys.clone(), values.clone()
    keys2[~mask] = 1e4
    values2[~mask] = -1e4
    context2, weights2 = module(query, keys2, values2, mask=mask)
    torch.testing.assert_close(context2, context)
    torch.testing.assert_close(weights2, weights)


def test_all_masked_gradient_is_finite():
    scores = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [False] * 4])
    (masked_softmax(scores, mask) * torch.randn(2, 4)).sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_precomputed_keys_equal_inline():
    module, query, keys, values = make()
    expected, _ = module(query, keys, values)
    got, _ = module(query, keys, values, keys_proj=module.precompute(keys))
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="keys_proj"):
        module(query, keys, values, keys_proj=torch.zeros(B, S, A + 1))


def test_recording_parity_and_axes():
    module, query, keys, values = make()
    off = module(query, keys, values)
    with record_attention(module) as rec:
        on = module(query, keys, values)
    torch.testing.assert_close(on[0], off[0])
    (entry,) = rec[""]
    assert entry.axes == ("batch", "key") and entry.weights.shape == (B, S)
    torch.testing.assert_close(entry.weights, on[1])


def test_every_parameter_gets_a_gradient():
    module, query, keys, values = make()
    context, _ = module(query, keys, values)
    assert_every_parameter_learns(context.pow(2).sum(), module)


def test_bf16_autocast_no_nan():
    module, query, keys, values = make()
    mask = lengths_to_mask(torch.tensor([7, 2, 0]), S)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        context, weights = module(query, keys, values, mask=mask)
    assert torch.isfinite(context).all() and torch.isfinite(weights).all()


def test_bad_shapes_raise():
    module, query, keys, values = make()
    with pytest.raises(ValueError, match="query"):
        module(torch.randn(B, DQ + 1), keys)
    with pytest.raises(ValueError, match="mask"):
        module(query, keys, mask=torch.ones(B, S + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        module(query, keys, mask=torch.ones(B, S))


def _tanh_form(keys_proj, query_proj, weight, extra=None):
    hidden = keys_proj + query_proj.unsqueeze(1)
    if extra is not None:
        hidden = hidden + extra
    return torch.tanh(hidden) @ weight.reshape(-1)


@pytest.mark.parametrize("with_extra", [False, True])
@pytest.mark.parametrize("rows", [1, 3, 40])  # 40 rows of 144 x 128 spans several chunks
def test_additive_energy_equals_tanh_form(rows: int, with_extra: bool) -> None:
    torch.manual_seed(rows)
    keys_proj, query_proj = torch.randn(rows, 144, 128), torch.randn(rows, 128)
    weight = torch.randn(1, 128)
    extra = torch.randn(rows, 144, 128) if with_extra else None
    expected = _tanh_form(keys_proj, query_proj, weight, extra)
    with torch.no_grad():  # the chunked path
        torch.testing.assert_close(
            additive_energy(keys_proj, query_proj, weight, extra), expected, atol=1e-4, rtol=0
        )
    leaves = [t.clone().requires_grad_() for t in (keys_proj, query_proj, weight)]
    got = additive_energy(*leaves, extra)  # the autograd path
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    got.square().sum().backward()
    reference = [t.clone().requires_grad_() for t in (keys_proj, query_proj, weight)]
    _tanh_form(*reference, extra).square().sum().backward()
    for mine, theirs in zip(leaves, reference):
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-3, rtol=1e-3)


def _energy_inputs(groups: int, per_group: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    keys_proj = torch.randn(groups, S, A, generator=generator)
    query_proj = torch.randn(groups * per_group, A, generator=generator)
    weight = torch.randn(1, A, generator=generator)
    return keys_proj, query_proj, weight


@pytest.mark.parametrize(("groups", "per_group"), [(1, 1), (1, 4), (3, 1), (3, 4)])
def test_compiled_energy_equals_eager(groups: int, per_group: int) -> None:
    inputs = _energy_inputs(groups, per_group)
    with torch.no_grad():
        eager = additive_energy(*inputs)
        kernel = CompiledEnergy()
        with kernel.active():
            fused = additive_energy(*inputs)
        assert not kernel.broken, "torch.compile failed on this machine"
    assert fused.shape == eager.shape == (groups * per_group, S)
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)


def test_compiled_energy_is_scoped_and_leaves_autograd_and_extra_eager(monkeypatch) -> None:
    calls = []
    kernel = CompiledEnergy()
    monkeypatch.setattr(kernel, "function", lambda *args: calls.append(args) or fused_energy(*args))
    keys_proj, query_proj, weight = _energy_inputs(2, 3)
    with torch.no_grad(), kernel.active():
        additive_energy(keys_proj, query_proj, weight)
        with kernel.active(False):
            additive_energy(keys_proj, query_proj, weight)  # switched off inside
        additive_energy(keys_proj, query_proj, weight, torch.zeros(6, S, A))  # extra: eager
    assert len(calls) == 1
    leaf = query_proj.clone().requires_grad_()
    with kernel.active():
        additive_energy(keys_proj, leaf, weight).sum().backward()  # autograd: eager
    assert len(calls) == 1 and leaf.grad is not None
    with torch.no_grad():
        additive_energy(keys_proj, query_proj, weight)  # outside the block
    assert len(calls) == 1


def test_compiled_energy_falls_back_with_one_warning_when_compiling_fails(monkeypatch) -> None:
    def broken(*args):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    kernel = CompiledEnergy()
    monkeypatch.setattr(kernel, "function", broken)
    inputs = _energy_inputs(2, 3)
    with torch.no_grad():
        eager = additive_energy(*inputs)
        with (
            kernel.active(),
            pytest.warns(RuntimeWarning, match="No working C.. compiler found\\)") as caught,
        ):
            first = additive_energy(*inputs)
            second = additive_energy(*inputs)
    assert len(caught) == 1 and kernel.broken
    torch.testing.assert_close(first, eager)
    torch.testing.assert_close(second, eager)


def test_compiled_energy_state_belongs_to_its_kernel(monkeypatch) -> None:
    """A failed kernel stays eager without touching another; a copy starts afresh; scopes nest."""
    broken, working = CompiledEnergy(), CompiledEnergy()
    monkeypatch.setattr(broken, "function", lambda *args: (_ for _ in ()).throw(RuntimeError("no compiler")))
    monkeypatch.setattr(working, "function", fused_energy)
    inputs = _energy_inputs(1, 2)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="no compiler"), broken.active():
        additive_energy(*inputs)
        with working.active():
            assert active_energy_kernel() is working
            additive_energy(*inputs)
        assert active_energy_kernel() is broken
    assert active_energy_kernel() is None
    assert broken.broken and not working.broken
    fresh = copy.deepcopy(broken)
    assert not fresh.broken and fresh.function is None
