"""The fast path's two kernels (SDPA and plain matmuls) give the same outputs and gradients, and
the kernel is chosen by device, dtype and key length."""

from __future__ import annotations

import contextlib

import pytest
import torch

from multiattn.attention import MultiHeadAttention
from multiattn.attention.multihead import CPU_MATMUL_MAX_KEYS, fast_path_kernel


def test_kernel_choice_follows_the_measurements() -> None:
    assert fast_path_kernel("cpu", "bf16", 128) == "matmul"
    assert fast_path_kernel("cpu", "bf16", CPU_MATMUL_MAX_KEYS) == "matmul"
    assert fast_path_kernel("cpu", "bf16", CPU_MATMUL_MAX_KEYS + 1) == "sdpa"
    assert fast_path_kernel("cpu", "fp32", 128) == "sdpa"
    assert fast_path_kernel("cuda", "bf16", 128) == "sdpa"
    assert fast_path_kernel("cuda", "fp16", 4096) == "sdpa"


def _run(module: MultiHeadAttention, kernel: str, x, context, mask, *, causal: bool, bf16: bool):
    module.kernel = kernel
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    x = x.detach().clone().requires_grad_(True)
    with autocast:
        out = module(x, context, mask=mask, is_causal=causal)
    (grad,) = torch.autograd.grad(out.float().square().sum(), x)
    return out.float(), grad


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("case", ["self", "causal", "cross_padded", "cross_empty_row"])
def test_sdpa_and_matmul_kernels_agree(one_thread, bf16: bool, case: str) -> None:
    torch.manual_seed(0)
    cross = case.startswith("cross")
    module = MultiHeadAttention(32, 4, context_dim=16 if cross else None)
    x = torch.randn(3, 9, 32)
    context = torch.randn(3, 12, 16) if cross else None
    mask = None
    if cross:
        mask = torch.ones(3, 12, dtype=torch.bool)
        mask[1, 6:] = False
        if case == "cross_empty_row":
            mask[2] = False  # no key at all: zero output, finite gradients
    causal = case == "causal"
    sdpa = _run(module, "sdpa", x, context, mask, causal=causal, bf16=bf16)
    matmul = _run(module, "matmul", x, context, mask, causal=causal, bf16=bf16)
    tolerance = 3e-2 if bf16 else 1e-5
    for a, b in zip(sdpa, matmul):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, atol=tolerance, rtol=tolerance)
    if case == "cross_empty_row":
        bias = module.out_proj.bias.detach().expand_as(matmul[0][2])  # a zero attended value
        torch.testing.assert_close(matmul[0][2], bias, atol=tolerance, rtol=tolerance)


def test_auto_kernel_is_the_chosen_one(one_thread, monkeypatch) -> None:
    """``kernel="auto"`` follows :func:`fast_path_kernel` (here forced to each kernel in turn)."""
    import multiattn.attention.multihead as multihead

    torch.manual_seed(0)
    module = MultiHeadAttention(16, 2)
    x = torch.randn(2, 5, 16)
    calls = []
    original = multihead.F.scaled_dot_product_attention
    monkeypatch.setattr(
        multihead.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    for chosen, expected_calls in (("sdpa", 1), ("matmul", 0)):
        calls.clear()
        monkeypatch.setattr(multihead, "fast_path_kernel", lambda *a, chosen=chosen: chosen)
        module(x)
        assert len(calls) == expected_calls
