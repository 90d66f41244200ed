"""The core's kernels on the GPU give the CPU's results: attention (both fast-path kernels, the
recording path, nn.MultiheadAttention) in fp32 / bf16 / fp16, the STN sampler, the CTC prefix
scorer, CTC forced alignment and batched beam search."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch import nn

from multiattn.attention import MultiHeadAttention
from multiattn.decoding import CTCPrefixScorer, StepOutput, beam_search
from multiattn.recording import record_attention
from multiattn.stn import warp

TOLERANCE = {"fp32": 2e-5, "bf16": 3e-2, "fp16": 4e-3}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, dtype: str):
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length", [16, 600])
def test_attention_paths_agree_on_device(device, dtype: str, causal: bool, length: int) -> None:
    if device.type == "cpu" and dtype == "fp16":
        pytest.skip("fp16 autocast is a GPU setting")
    torch.manual_seed(0)
    ours = MultiHeadAttention(64, 4)
    reference = nn.MultiheadAttention(64, 4, batch_first=True)
    ours.load_torch_weights(reference)
    x = torch.randn(3, length, 64)
    padding = torch.ones(3, length, dtype=torch.bool)
    padding[1, length // 2 :] = False  # key padding on one row
    expected = reference(x, x, x, key_padding_mask=~padding, need_weights=False)[0]  # CPU fp32
    if causal:
        causal_mask = torch.ones(length, length, dtype=torch.bool).triu(1)  # True = masked (torch)
        expected = reference(x, x, x, attn_mask=causal_mask, need_weights=False)[0]
    ours, x, padding = ours.to(device), x.to(device), padding.to(device)
    outputs = {}
    for name in ("sdpa", "matmul", "auto", "recording"):
        ours.kernel = "auto" if name == "recording" else name
        recorder = record_attention() if name == "recording" else contextlib.nullcontext()
        with torch.no_grad(), recorder, _autocast(device, dtype):
            out = ours(x, is_causal=True) if causal else ours(x, mask=padding)
        outputs[name] = out.float().cpu()
    ours.kernel = "auto"
    for name, out in outputs.items():
        torch.testing.assert_close(
            out, expected, atol=TOLERANCE[dtype] * 4, rtol=TOLERANCE[dtype] * 4, msg=name
        )


def test_recording_parity_with_gradients_on_device(device) -> None:
    torch.manual_seed(0)
    module = MultiHeadAttention(32, 2, context_dim=24).to(device)
    x = torch.randn(2, 7, 32, device=device, requires_grad=True)
    context = torch.randn(2, 11, 24, device=device)
    mask = torch.ones(2, 11, dtype=torch.bool, device=device)
    mask[0, 5:] = False
    plain = module(x, context, mask=mask)
    (grad_plain,) = torch.autograd.grad(plain.sum(), x)
    with record_attention(module) as recorded:
        again = module(x, context, mask=mask)
    (grad_again,) = torch.autograd.grad(again.sum(), x)
    torch.testing.assert_close(again, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_again, grad_plain, atol=1e-5, rtol=1e-5)
    (weights,) = [m.weights for name in recorded for m in recorded[name]]
    assert weights.device.type == device.type
    assert torch.all(weights[0, :, :, 5:] == 0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_stn_sampler_matches_cpu(device, align_corners: bool) -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 1, 60, 60)
    theta = torch.tensor([[0.5, 0.1, 0.2], [-0.1, 0.6, -0.3]]).repeat(4, 1, 1) + 0.05 * torch.randn(4, 2, 3)
    options = dict(output_size=(28, 28), align_corners=align_corners, padding_mode="zeros")
    expected = warp(images, theta, **options)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        got = warp(images.to(device), theta.to(device), **options)
    assert got.dtype == torch.float32  # the sampler runs in float32 under autocast
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=1e-5)


def _random_ctc(batch: int, frames: int, vocab: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, frames, vocab, generator=generator, dtype=torch.float64).log_softmax(-1)


def test_ctc_prefix_scorer_matches_cpu(device) -> None:
    log_probs, lengths = _random_ctc(3, 20, 7), torch.tensor([20, 13, 6])
    scores = []
    for where in (torch.device("cpu"), device):
        scorer = CTCPrefixScorer(log_probs.to(where), lengths.to(where), blank_id=0, eos_id=1)
        state = scorer.initial_state()
        steps = []
        for token in (3, 3, 5, 1):
            delta, candidates = scorer.score(
                state, torch.tensor([[token, 4], [token, 6], [token, 1]], device=where)
            )
            steps.append(delta.cpu())
            state = scorer.select(
                candidates, torch.arange(3, device=where), torch.full((3,), token, device=where)
            )
        scores.append(torch.stack(steps))
    # The scorer runs its recursion in float32 (by design): log-sum-exp reduces in another order on
    # each device, so the two agree to float32 rounding, not bit for bit.
    torch.testing.assert_close(scores[1], scores[0], atol=1e-5, rtol=1e-5)


def test_forced_alignment_matches_cpu(device) -> None:
    from multiattn.tasks.asr.alignment import ctc_token_spans

    log_probs = _random_ctc(1, 40, 9)[0].float()  # (S, V)
    tokens = [3, 4, 4, 7, 2, 8]
    expected = ctc_token_spans(log_probs, tokens)
    assert expected is not None and len(expected) == len(tokens)
    assert ctc_token_spans(log_probs.to(device), tokens) == expected


class _Decoder(nn.Module):
    """A GRU decoder with attention over a per-item memory (float64: no near-ties between devices)."""

    def __init__(self, vocab: int = 11, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.cell = nn.GRUCell(2 * dim, dim)
        self.out = nn.Linear(dim, vocab)

    def step(self, tokens: torch.Tensor, state: dict) -> StepOutput:
        hidden, memory = state["hidden"], state["memory"]
        weights = torch.einsum("nd,nsd->ns", hidden, memory).softmax(-1)  # (N, S)
        context = torch.einsum("ns,nsd->nd", weights, memory)
        hidden = self.cell(torch.cat([self.embed(tokens[:, -1]), context], -1), hidden)
        return StepOutput(self.out(hidden).log_softmax(-1), {"hidden": hidden, "memory": memory}, weights)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.4])
def test_batched_beam_search_gives_the_cpu_hypotheses(device, ctc_weight: float) -> None:
    torch.manual_seed(0)
    decoder = _Decoder().double()
    memory = torch.randn(6, 9, 16, dtype=torch.float64)
    log_probs, lengths = _random_ctc(6, 14, 11), torch.tensor([14, 14, 9, 12, 14, 7])
    results = []
    for where in (torch.device("cpu"), device):
        model = decoder.to(where)
        state = {"hidden": torch.zeros(6, 16, dtype=torch.float64, device=where), "memory": memory.to(where)}
        joint = {}
        if ctc_weight:
            scorer = CTCPrefixScorer(log_probs.to(where), lengths.to(where), blank_id=0, eos_id=2)
            joint = {"ctc_scorer": scorer, "ctc_weight": ctc_weight}
        hyps = beam_search(
            model.step, state, batch_size=6, beam_size=4, bos_id=1, eos_id=2, max_len=12, **joint
        )
        results.append([(tuple(h.tokens), float(h.score)) for h in hyps])
    cpu, gpu = results
    assert len(gpu) == len(cpu)
    for (cpu_tokens, cpu_score), (gpu_tokens, gpu_score) in zip(cpu, gpu):
        if math.isinf(cpu_score):
            # No hypothesis can be scored (CTC: more tokens than frames allow): every candidate ties
            # at -inf, and which one is returned is the devices' sort order, not the search's.
            assert math.isinf(gpu_score) and gpu_score < 0
            continue
        assert gpu_tokens == cpu_tokens
        assert gpu_score == pytest.approx(cpu_score, rel=1e-5, abs=1e-5)
    assert any(tokens for tokens, score in cpu if not math.isinf(score))


def test_spec_augment_and_length_checks_never_wait_for_the_gpu(device) -> None:
    from multiattn.masks import check_lengths
    from multiattn.tasks.asr.features import SpecAugment

    if device.type != "cuda":
        pytest.skip("synchronisation debug mode is a CUDA setting")
    augment = SpecAugment().train()
    x = torch.randn(4, 300, 80, device=device) + 5.0
    lengths = torch.tensor([300, 250, 120, 40], device=device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host-device synchronisation raises
    try:
        check_lengths(lengths, 4, 300)
        out = augment(x, lengths)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bool((out == 0).any())
