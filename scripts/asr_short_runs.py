"""Short ASR training runs that compare recipe changes at equal steps (how configs/asr_grammar.yaml's
learning rate, CTC weight and augmentation were chosen).

Each variant is ``configs/asr_grammar.yaml`` with its output paths moved to ``outputs/asr_short/<name>``
and the overrides below, trained for ``--steps`` optimiser steps (the cosine schedule then ends at
that step), validated with CTC greedy decoding after each epoch, and scored with CTC greedy
decoding on the first ``--limit`` utterances of ``test`` and ``test_unseen_voices``
(``benchmarks/bench_asr.py --modes ctc``). Variants run one after another with ``--threads``
torch threads each; ``--parallel 2`` runs two at a time with one thread each, which gets more
work out of two cores.

Usage::

    python scripts/asr_short_runs.py [--variants A B C D E] [--steps 750] [--limit 200] [--parallel 1]

Writes ``benchmarks/results/asr_short_runs.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from multiattn.io import atomic_open, write_json  # noqa: E402

# name -> (description, model.init_args overrides); "B" .. "E" build on the lr that won.
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "A": (
        "lr 1.5e-3, lambda 0.3, SpecAugment (the previous config)",
        {"learning_rate": 0.0015, "ctc_weight": 0.3},
    ),
    "B": ("lr 3e-3, lambda 0.3, SpecAugment", {"learning_rate": 0.003, "ctc_weight": 0.3}),
    "C": (
        "lr 3e-3, lambda 0.3, no SpecAugment",
        {"learning_rate": 0.003, "ctc_weight": 0.3, "spec_augment": False},
    ),
    "D": (
        "lr 3e-3, lambda 0.5, SpecAugment (configs/asr_grammar.yaml)",
        {"learning_rate": 0.003, "ctc_weight": 0.5},
    ),
    "E": (
        "lr 3e-3, lambda 0.5, SpecAugment, speed perturbation 0.9/1.0/1.1",
        {"learning_rate": 0.003, "ctc_weight": 0.5, "speed_perturb": [0.9, 1.0, 1.1]},
    ),
}


def _config(name: str, overrides: dict[str, object], out: Path) -> Path:
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "asr_grammar.yaml").read_text(encoding="utf-8"))
    root = str(out / name)
    config["trainer"]["default_root_dir"] = root
    # CSV metrics: this script reads each run's validation WER back from them.
    config["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": root, "name": "logs"},
    }
    for callback in config["trainer"]["callbacks"]:
        if "dirpath" in callback.get("init_args", {}):
            callback["init_args"]["dirpath"] = f"{root}/checkpoints"
        if "output_dir" in callback.get("init_args", {}):
            callback["init_args"]["output_dir"] = f"{root}/predictions"
    config["trainer"]["max_time"] = None
    config["model"]["init_args"].update(overrides, log_overlays=False)
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _run(name: str, args: argparse.Namespace, out: Path, threads: int) -> subprocess.Popen:
    config = _config(name, VARIANTS[name][1], out)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "JSONARGPARSE_DEPRECATION_WARNINGS": "off"}
    script = (
        f"{sys.executable} -m multiattn.cli fit -c {config} --trainer.max_steps {args.steps} "
        f"--trainer.enable_progress_bar false && {sys.executable} -m benchmarks.bench_asr "
        f"--ckpt {out / name / 'checkpoints' / 'best.ckpt'} --modes ctc --limit {args.limit} "
        f"--skip speed throughput --threads {threads} --output {out / name / 'eval.json'}"
    )
    log = open(out / f"{name}.log", "w")  # the child process owns it until it ends
    return subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _validation(out: Path, name: str) -> list[dict[str, float]]:
    rows = []
    for metrics in sorted((out / name / "logs").glob("*/metrics.csv")):
        with metrics.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("val/wer"):
                    rows.append(
                        {
                            "step": int(row["step"]) + 1,
                            "wer": float(row["val/wer"]),
                            "cer": float(row["val/cer"]),
                        }
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=750)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=1, choices=[1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run when not parallel")
    args = parser.parse_args(argv)
    out = ROOT / "outputs" / "asr_short"
    threads = 1 if args.parallel == 2 else args.threads
    pending = list(args.variants)
    while pending:
        batch, pending = pending[: args.parallel], pending[args.parallel :]
        runs = {name: _run(name, args, out, threads) for name in batch}
        for name, process in runs.items():
            if process.wait() != 0:
                print(f"variant {name} failed: see {out / f'{name}.log'}", file=sys.stderr)
                return 1
    result = {"steps": args.steps, "limit": args.limit, "variants": {}}
    lines = [
        "# ASR short runs (CTC greedy)",
        "",
        f"Command: `python scripts/asr_short_runs.py --variants {' '.join(args.variants)} --steps {args.steps} "
        f"--limit {args.limit} --parallel {args.parallel}`",
        "",
        f"| variant | recipe | val WER after epoch 1 / {args.steps} steps | test WER / CER | unseen voices WER / CER |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in args.variants:
        quality = json.loads((out / name / "eval.json").read_text(encoding="utf-8"))["quality"]
        validation = _validation(out, name)
        result["variants"][name] = {"recipe": VARIANTS[name][0], "validation": validation, "quality": quality}
        val = " / ".join(f"{row['wer']:.3f}" for row in validation)
        test, unseen = quality["test"]["ctc"], quality["test_unseen_voices"]["ctc"]
        lines.append(
            f"| {name} | {VARIANTS[name][0]} | {val} | {test['wer']:.3f} / {test['cer']:.3f} | "
            f"{unseen['wer']:.3f} / {unseen['cer']:.3f} |"
        )
    results = ROOT / "benchmarks" / "results"
    write_json(results / "asr_short_runs.json", result, indent=1)
    with atomic_open(results / "asr_short_runs.md", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
