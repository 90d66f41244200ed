"""Speech training throughput of one checkout: seconds of audio per second of training step.

Times forward + backward + AdamW on real batches of the checkpoint's own test data, fp32 and
bf16-mixed autocast, one thread, with ``benchmarks.bench_asr``'s step timer; prints the median
of ``--rounds`` runs of ``--steps`` steps each (the first step of a run warms up and is not
counted). ``bench_asr --quick`` times 2 steps of 4 utterances, too few to compare two trees; this
times more. To compare two checkouts, train the same config in each (``python -m
benchmarks.bench_asr --quick --skip quality speed`` writes ``outputs/asr_tiny``), then run this in
each (``--checkout`` imports ``multiattn`` and ``benchmarks`` from that tree and reads the
checkpoint and data there), interleaved, several times.

Usage::

    python scripts/asr_training_step.py [--checkout PATH] [--ckpt outputs/asr_tiny/checkpoints/best.ckpt]
        [--steps 10] [--batch-size 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the tree whose multiattn is timed")
    parser.add_argument(
        "--ckpt",
        type=Path,
        default=Path("outputs/asr_tiny/checkpoints/best.ckpt"),
        help="checkpoint whose model is trained (relative to --checkout)",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    sys.path.insert(0, str(checkout))
    os.chdir(checkout)  # the checkpoint's data_dir is relative to its tree
    torch.set_num_threads(1)
    from benchmarks.bench_asr import _loader, _training_throughput
    from multiattn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.ckpt)
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    data_args = {
        k: v
        for k, v in (checkpoint.get("datamodule_hyper_parameters") or {}).items()
        if not k.startswith("_")
    }
    data_args.pop("augment", None)  # the same clean batches in every tree
    _, dataset = _loader(data_args, "test", args.batch_size, None)
    runs = [
        _training_throughput(hparams, dataset, steps=args.steps, batch_size=args.batch_size)
        for _ in range(args.rounds)
    ]
    fp32 = statistics.median(run["fp32"] for run in runs)
    bf16 = statistics.median(run["bf16_mixed"] for run in runs)
    print(f"multiattn from {checkout}; median of {args.rounds} runs of {args.steps} steps, 1 thread")
    print(f"audio seconds per second: fp32 {fp32:.0f}, bf16-mixed {bf16:.0f} ({bf16 / fp32:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
