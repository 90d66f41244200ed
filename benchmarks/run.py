"""Run every benchmark (``make bench``) and collect their Markdown tables in one summary.

Each ``benchmarks/bench_<name>.py`` is a module with ``main(argv) -> int`` writing
``benchmarks/results/<name>.json`` and ``<name>.md``. They run one after another, each in its
own process (so one's memory and threads do not disturb the next), and
``benchmarks/results/SUMMARY.md`` gathers their tables with the command and the machine.

Usage::

    python -m benchmarks.run                 # everything (long: includes full training runs)
    python -m benchmarks.run --quick         # small sizes, minutes
    python -m benchmarks.run --only attention decoding
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.output import machine
from multiattn.io import atomic_open

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUTSIDE = {"gpu"}  # bench_gpu.py needs a GPU and has its own command (benchmarks/README.md)


def discover() -> list[str]:
    return sorted(
        name for p in HERE.glob("bench_*.py") if (name := p.stem.removeprefix("bench_")) not in OUTSIDE
    )


def _set_aside(name: str) -> dict[Path, bytes]:
    """The full-run results of ``name`` (a quick run must not replace them)."""
    return {p: p.read_bytes() for p in (RESULTS / f"{name}.json", RESULTS / f"{name}.md") if p.exists()}


def _quick_results_beside(name: str, kept: dict[Path, bytes]) -> None:
    """Move what a quick run wrote to ``<name>_quick.*`` and put the full-run files back."""
    for suffix in (".json", ".md"):
        written = RESULTS / f"{name}{suffix}"
        if written.exists() and kept.get(written) != written.read_bytes():
            written.replace(RESULTS / f"{name}_quick{suffix}")
    for path, data in kept.items():
        path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (each benchmark's --quick)")
    parser.add_argument("--only", nargs="*", default=None, help=f"a subset of: {' '.join(discover())}")
    args = parser.parse_args(argv)
    names = discover() if not args.only else args.only
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {discover()}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    for name in names:
        cmd = [sys.executable, "-m", f"benchmarks.bench_{name}", *(["--quick"] if args.quick else [])]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        kept = _set_aside(name) if args.quick else {}
        code = subprocess.call(cmd, cwd=HERE.parent, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
        if args.quick:
            _quick_results_beside(name, kept)
        status[name] = f"exit {code} after {time.perf_counter() - start:.0f} s"
    lines = [
        "# Benchmark summary",
        "",
        f"Command: `python -m benchmarks.run{' --quick' if args.quick else ''}`"
        f"{' --only ' + ' '.join(names) if args.only else ''}  ",
        f"Machine: {machine()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
    ]
    for name in names:
        lines += [f"## {name} ({status[name]})", ""]
        md = RESULTS / f"{name}{'_quick' if args.quick else ''}.md"
        md = md if md.exists() else RESULTS / f"{name}.md"
        lines += [md.read_text().strip() if md.exists() else "(no table written)", ""]
    with atomic_open(RESULTS / ("SUMMARY_quick.md" if args.quick else "SUMMARY.md")) as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / ('SUMMARY_quick.md' if args.quick else 'SUMMARY.md')}")
    return 0 if all(s.startswith("exit 0") for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
