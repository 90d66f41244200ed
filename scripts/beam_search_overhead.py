"""The beam search's own cost per step: ``multiattn.decoding.beam_search`` over a step function that
only looks its scores up in a table, so the time is the search's bookkeeping (top-k, finished
hypotheses, reordering, stop test), not a model's.

Cases: one item and 16 items, beam 5, 30 steps at most, attention-only and joint CTC/attention
(``CTCPrefixScorer`` over random CTC outputs, weight 0.3). Prints the best of ``--rounds`` runs per
case. To compare two checkouts, run it in each (``--checkout`` imports ``multiattn`` from
another tree), interleaved, on an idle machine or several times.

Usage::

    python scripts/beam_search_overhead.py [--rounds 30] [--checkout PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the tree whose multiattn is timed")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.checkout.resolve()))
    from multiattn.decoding import CTCPrefixScorer, StepOutput, beam_search

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    vocab, frames, blank, eos = 50, 40, 0, 1
    table = torch.randn(vocab, vocab, generator=generator).log_softmax(-1)  # next-token scores by last token
    table[:, blank] = float("-inf")
    ctc = torch.randn(16, frames, vocab, generator=generator).mul(3.0).log_softmax(-1)

    search_settings = dict(beam_size=5, bos_id=eos, eos_id=eos, max_len=30)

    def step(tokens: torch.Tensor, state: None) -> StepOutput:
        return StepOutput(table.index_select(0, tokens[:, -1]), state, None)

    def search(items: int, ctc_weight: float) -> float:
        scorer = None
        if ctc_weight:
            scorer = CTCPrefixScorer(ctc[:items], torch.full((items,), frames), blank_id=blank, eos_id=eos)
        start = time.perf_counter()
        beam_search(step, None, batch_size=items, ctc_scorer=scorer, ctc_weight=ctc_weight, **search_settings)
        return time.perf_counter() - start

    cases = [(1, 0.0), (16, 0.0), (1, 0.3), (16, 0.3)]
    best = {case: float("inf") for case in cases}
    for _ in range(args.rounds):  # interleaved, so a busy moment hits every case alike
        for case in cases:
            best[case] = min(best[case], search(*case))
    print(f"multiattn from {args.checkout.resolve()}; best of {args.rounds} rounds, 1 thread")
    print("| items | CTC weight | ms per search |")
    print("| --- | --- | --- |")
    for (items, ctc_weight), seconds in best.items():
        print(f"| {items} | {ctc_weight} | {seconds * 1000:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
