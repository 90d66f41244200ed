"""Choose joint decoding's CTC weight and language-model weight on the validation split.

Every ``(lm_weight, ctc_weight)`` pair of the grid decodes the ``validation`` split (training
voices, held-out sentences) with joint CTC/attention beam search; the pair with the lowest WER
is chosen (ties: the smaller language-model weight, then the smaller CTC weight). The same grid is
then scored on ``test`` and ``test_unseen_voices`` for the record only — they never take part in
the choice, so the test numbers stay honest. The chosen pair is what the training config's
``decoding.lm_weight`` / ``decoding.ctc_weight`` should hold.

Usage::

    python scripts/asr_decode_weights.py --ckpt outputs/asr/checkpoints/best.ckpt \
        [--lm-weights 0 0.5 1 1.5 2 2.5] [--ctc-weights 0.3 0.5] [--threads 2] [--limit N] \
        [--splits validation test]

Writes ``benchmarks/results/asr_decode_weights.{json,md}`` (``--output`` changes the stem).
JSON keys: ``checkpoint``, ``beam_size``, ``grid = [{lm_weight, ctc_weight, wer: {split: WER}}]``,
``chosen = {lm_weight, ctc_weight}``, ``splits``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from multiattn.io import atomic_open, write_json  # noqa: E402

SPLITS = ("validation", "test", "test_unseen_voices")


def _wer(system, loader, *, beam_size: int, ctc_weight: float, lm_weight: float) -> float:
    from benchmarks.bench_asr import joint_decode
    from multiattn.metrics.speech import error_counts

    refs, hyps = [], []
    for batch in loader:
        refs.extend(batch.texts)
        results = joint_decode(system, batch, beam_size=beam_size, ctc_weight=ctc_weight, lm_weight=lm_weight)
        hyps.extend(r.text for r in results)
    counts = error_counts(refs, hyps, unit="word")
    return counts["errors"] / max(counts["reference_units"], 1)


def _markdown(result: dict) -> str:
    chosen = result["chosen"]
    lines = [
        "# Joint decoding weights, chosen on the validation split",
        "",
        f"Checkpoint `{result['checkpoint']}`, beam {result['beam_size']}. Chosen on `validation`: "
        f"language-model weight {chosen['lm_weight']}, CTC weight {chosen['ctc_weight']}. "
        "`test` and `test_unseen_voices` are shown for the record and took no part in the choice.",
        "",
        "| LM weight | CTC weight | " + " | ".join(f"{s} WER %" for s in result["splits"]) + " |",
        "| ---: | ---: |" + " ---: |" * len(result["splits"]),
    ]
    for row in result["grid"]:
        mark = (
            " **(chosen)**"
            if (row["lm_weight"], row["ctc_weight"]) == (chosen["lm_weight"], chosen["ctc_weight"])
            else ""
        )
        cells = " | ".join(f"{100 * row['wer'][s]:.2f}" for s in result["splits"])
        lines.append(f"| {row['lm_weight']}{mark} | {row['ctc_weight']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asr_decode_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--lm-weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    parser.add_argument("--ctc-weights", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--beam-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="utterances per split (default all)")
    parser.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        default=list(SPLITS),
        help="splits scored (validation, which chooses, always among them)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "asr_decode_weights",
        help="path stem of the .json and .md written",
    )
    args = parser.parse_args(argv)
    splits = [split for split in SPLITS if split in args.splits or split == "validation"]
    torch.set_num_threads(args.threads)
    from benchmarks.bench_asr import _loader
    from multiattn.checkpoint import load_checkpoint, load_system
    from multiattn.tasks.asr.system import ASRSystem

    system = load_system(ASRSystem, args.ckpt)
    if system.language_model is None and any(w > 0 for w in args.lm_weights):
        raise SystemExit(f"{args.ckpt}: no language model in this checkpoint; use --lm-weights 0")
    data_args = dict(load_checkpoint(args.ckpt).get("datamodule_hyper_parameters") or {})
    data_args = {k: v for k, v in data_args.items() if not k.startswith("_")}
    grid = [{"lm_weight": lm, "ctc_weight": w, "wer": {}} for lm in args.lm_weights for w in args.ctc_weights]
    with torch.inference_mode():
        for split in splits:
            loader, _ = _loader(data_args, split, 16, args.limit)
            for row in grid:
                row["wer"][split] = _wer(
                    system,
                    loader,
                    beam_size=args.beam_size,
                    ctc_weight=row["ctc_weight"],
                    lm_weight=row["lm_weight"],
                )
                print(
                    split, row["lm_weight"], row["ctc_weight"], f"{100 * row['wer'][split]:.2f}", flush=True
                )
    best = min(grid, key=lambda r: (r["wer"]["validation"], r["lm_weight"], r["ctc_weight"]))
    result = {
        "checkpoint": str(args.ckpt),
        "beam_size": args.beam_size,
        "splits": splits,
        "grid": grid,
        "chosen": {"lm_weight": best["lm_weight"], "ctc_weight": best["ctc_weight"]},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.output.with_suffix(".json"), result, indent=1)
    with atomic_open(args.output.with_suffix(".md"), "w", encoding="utf-8") as handle:
        handle.write(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
