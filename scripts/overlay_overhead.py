"""How much the validation-time attention overlays cost training.

Runs each task's demo config for one epoch twice, with ``log_overlays`` on and off, in the same
process order per repeat (on, off, off, on, ...) so drift hits both equally, and reports the wall
times and the relative overhead. Writes ``benchmarks/results/overlay_overhead.{json,md}``.

Usage::

    python scripts/overlay_overhead.py [--tasks stn captioning asr] [--repeats 2] [--train-batches 50]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from multiattn.io import atomic_open, write_json  # noqa: E402


def fit_seconds(task: str, overlays: bool, train_batches: int, workdir: Path) -> float:
    cmd = [
        sys.executable, "-m", "multiattn.cli", "fit", "-c", str(ROOT / "configs" / f"{task}_demo.yaml"),
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", str(train_batches),
        "--trainer.limit_val_batches", "4",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(workdir / "out"),
        f"--model.init_args.log_overlays={'true' if overlays else 'false'}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "JSONARGPARSE_DEPRECATION_WARNINGS": "off",
    }
    start = time.perf_counter()
    # cwd=ROOT: the demo data caches under data/ are reused; outputs go to the temporary folder.
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["stn", "captioning", "asr"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-batches", type=int, default=50)
    args = parser.parse_args(argv)
    rows = []
    for task in args.tasks:
        times: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.repeats):
            order = (True, False) if r % 2 == 0 else (False, True)
            for overlays in order:
                with tempfile.TemporaryDirectory() as tmp:
                    times[overlays].append(fit_seconds(task, overlays, args.train_batches, Path(tmp)))
        on, off = min(times[True]), min(times[False])
        rows.append(
            {
                "task": task,
                "with_overlays_s": on,
                "without_s": off,
                "overhead": on / off - 1,
                "times": {"on": times[True], "off": times[False]},
            }
        )
        print(
            f"{task}: {on:.1f} s with overlays, {off:.1f} s without: {100 * (on / off - 1):+.1f}%", flush=True
        )
    out = ROOT / "benchmarks" / "results"
    write_json(
        out / "overlay_overhead.json",
        {
            "command": "python scripts/overlay_overhead.py " + " ".join(argv or sys.argv[1:]),
            "train_batches": args.train_batches,
            "rows": rows,
        },
        indent=1,
    )
    lines = [
        "# Validation overlay overhead",
        "",
        f"One epoch of {args.train_batches} training batches + 4 validation batches of each demo config, "
        f"best of {args.repeats}, process start-up included (the overhead is a share of a very short epoch, "
        "so an upper bound for real epochs).",
        "",
        "| task | with overlays s | without s | overhead |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {r['task']} | {r['with_overlays_s']:.1f} | {r['without_s']:.1f} | {100 * r['overhead']:+.1f}% |"
            for r in rows
        ],
    ]
    with atomic_open(out / "overlay_overhead.md") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
