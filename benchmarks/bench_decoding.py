"""Batched beam search vs one item at a time, side by side in one run (plain and joint CTC).

A toy GRU decoder attending over a random memory stands in for a model; both ways must give
identical hypotheses, and the ratio of their wall-clock times is the number reported. The joint
CTC/attention case adds a :class:`~multiattn.decoding.CTCPrefixScorer` over random CTC outputs.

Run: ``.venv/bin/python -m benchmarks.bench_decoding [--quick]``. Writes
``benchmarks/results/decoding.json`` and ``benchmarks/results/decoding.md``.

Shape legend: ``B`` items, ``K`` beam, ``N = B * K`` rows, ``S`` memory length, ``T`` CTC frames,
``V`` vocabulary, ``H`` hidden size.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from benchmarks.output import write_results
from multiattn.decoding import CTCPrefixScorer, Hypothesis, StepOutput, beam_search
from multiattn.runtime import keep_freed_memory

BLANK, EOS = 0, 1  # EOS doubles as BOS


class ToyDecoder(nn.Module):
    """GRU cell + dot-product attention over a per-item memory."""

    def __init__(self, *, vocab_size: int, hidden_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_dim)
        self.cell = nn.GRUCell(hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def step(self, tokens: Tensor, state: tuple[Tensor, Tensor]) -> StepOutput:
        hidden, memory = state
        hidden = self.cell(self.embed(tokens[:, -1]), hidden)  # (N, H)
        weights = torch.softmax(torch.einsum("nh,nsh->ns", hidden, memory), dim=-1)  # (N, S)
        logits = self.out(hidden + torch.einsum("ns,nsh->nh", weights, memory))  # (N, V)
        logits[:, BLANK] = float("-inf")
        return StepOutput(torch.log_softmax(logits, dim=-1), (hidden, memory), weights)


def _same(a: list[Hypothesis], b: list[Hypothesis]) -> bool:
    return all(x.tokens == y.tokens and abs(x.score - y.score) < 1e-4 for x, y in zip(a, b))


def run_case(*, items: int, beam: int, vocab: int, hidden: int, max_len: int, frames: int, ctc_weight: float):
    torch.manual_seed(0)
    model = ToyDecoder(vocab_size=vocab, hidden_dim=hidden).eval()
    memory = torch.randn(items, 12, hidden)
    init = memory.mean(dim=1)
    ctc = torch.log_softmax(torch.randn(items, frames, vocab) * 3.0, dim=-1)
    lengths = torch.randint(frames // 2, frames + 1, (items,))
    common = dict(beam_size=beam, bos_id=EOS, eos_id=EOS, ctc_weight=ctc_weight)

    def scorer(sl: slice) -> CTCPrefixScorer | None:
        if ctc_weight == 0:
            return None
        return CTCPrefixScorer(ctc[sl], lengths[sl], blank_id=BLANK, eos_id=EOS)

    start = time.perf_counter()
    batched = beam_search(
        model.step,
        (init, memory),
        batch_size=items,
        max_len=max_len,
        ctc_scorer=scorer(slice(None)),
        **common,
    )
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    sequential = []
    for b in range(items):
        sl = slice(b, b + 1)
        sequential += beam_search(
            model.step, (init[sl], memory[sl]), batch_size=1, max_len=max_len, ctc_scorer=scorer(sl), **common
        )
    sequential_s = time.perf_counter() - start
    return {
        "items": items,
        "beam_size": beam,
        "vocab_size": vocab,
        "max_len": max_len,
        "ctc_weight": ctc_weight,
        "ctc_frames": frames if ctc_weight else None,
        "batched_seconds": round(batched_s, 4),
        "sequential_seconds": round(sequential_s, 4),
        "speedup": round(sequential_s / batched_s, 2),
        "identical": _same(batched, sequential),
        "mean_output_len": sum(len(h.tokens) for h in batched) / items,
    }


def _markdown(rows: list[dict]) -> str:
    lines = [
        "| case | items | beam | V | batched s | one-at-a-time s | speed-up | identical |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        case = f"joint CTC w={row['ctc_weight']}, T={row['ctc_frames']}" if row["ctc_weight"] else "attention"
        lines.append(
            f"| {case} | {row['items']} | {row['beam_size']} | {row['vocab_size']} | {row['batched_seconds']} "
            f"| {row['sequential_seconds']} | {row['speedup']}x | {row['identical']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items and shorter outputs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the multiattn command does (multiattn/runtime.py)
    torch.set_num_threads(args.threads)
    items = 8 if args.quick else 64
    max_len = 10 if args.quick else 25
    frames = 40 if args.quick else 100
    with torch.no_grad():
        rows = [
            run_case(
                items=items, beam=5, vocab=100, hidden=64, max_len=max_len, frames=frames, ctc_weight=0.0
            ),
            run_case(
                items=items, beam=5, vocab=100, hidden=64, max_len=max_len, frames=frames, ctc_weight=0.3
            ),
        ]
    result = {"quick": args.quick, "threads": args.threads, "torch": torch.__version__, "cases": rows}
    write_results("decoding", result, _markdown(rows), indent=2)
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
