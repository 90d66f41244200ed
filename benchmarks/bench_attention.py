"""Self-attention speed and memory: fast path, recording path, nn.MultiheadAttention, linear attention.

One forward + backward of a self-attention module (B=8, D=256, 4 heads) per measurement, in fp32
and under ``torch.autocast("cpu", dtype=torch.bfloat16)``, over sequence lengths ``T``.

Each case runs in a fresh subprocess, so its peak memory is measurable: the subprocess builds the
module and input, reads its current resident set size (``/proc/self/statm``), runs one forward +
backward, and reports ``ru_maxrss`` (the process's resident high-water mark, from the ``resource``
module) minus that baseline. Then it times ``repeats`` more iterations and reports the median.

Explicit paths (recording) whose weight tensors would not fit are skipped: the estimate is four
fp32 ``(B, nh, T, T)`` tensors alive at once (scores, weights, and their gradients); cases above
``--memory-cap-gib`` are marked ``skipped: memory``.

Run: ``.venv/bin/python -m benchmarks.bench_attention [--quick]``; writes
``benchmarks/results/attention.json`` and ``benchmarks/results/attention.md``.

Shape legend: ``B`` batch, ``T`` sequence length, ``D`` embed_dim, ``nh`` heads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.output import write_results
from multiattn.runtime import keep_freed_memory

BATCH, EMBED_DIM, NUM_HEADS = 8, 256, 4
METHODS = ("fast", "recording", "torch_mha", "linear")
SHORT = (128, 512, 2048, 4096)  # every method
LONG = (1024, 8192, 16384)  # fast path and linear attention only


def _explicit_bytes(length: int) -> int:
    return 4 * BATCH * NUM_HEADS * length * length * 4  # four fp32 (B, nh, T, T) tensors


def _cases(quick: bool) -> list[tuple[str, int]]:
    if quick:
        return [(method, length) for length in (128, 512) for method in METHODS]
    cases = [(method, length) for length in SHORT for method in METHODS]
    cases += [(method, length) for length in LONG for method in ("fast", "linear")]
    return sorted(cases, key=lambda case: (case[1], METHODS.index(case[0])))


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_case(
    method: str, dtype: str, length: int, repeats: int, max_seconds: float, threads: int, device: str = "cpu"
) -> dict:
    """Measure one case in this process (called in a fresh subprocess).

    On CUDA the step ends with a synchronisation and the peak is ``torch.cuda.max_memory_allocated``
    above what was allocated before the first step.
    """
    import contextlib

    import torch
    from torch import nn

    from multiattn.attention import LinearAttention, MultiHeadAttention
    from multiattn.recording import record_attention

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if method == "torch_mha":
        module: nn.Module = nn.MultiheadAttention(EMBED_DIM, NUM_HEADS, batch_first=True)
    elif method == "linear":
        module = LinearAttention(EMBED_DIM, NUM_HEADS)
    else:
        module = MultiHeadAttention(EMBED_DIM, NUM_HEADS)
    module.to(device).train()
    x = torch.randn(BATCH, length, EMBED_DIM, device=device, requires_grad=True)
    cuda = torch.device(device).type == "cuda"

    def step() -> None:
        recorder = record_attention() if method == "recording" else contextlib.nullcontext()
        autocast = (
            torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
            if dtype == "bf16"
            else contextlib.nullcontext()
        )
        with recorder, autocast:
            if method == "torch_mha":
                out = module(x, x, x, need_weights=False, is_causal=False)[0]
            else:
                out = module(x)
        out.float().sum().backward()
        module.zero_grad(set_to_none=True)
        x.grad = None
        if cuda:
            torch.cuda.synchronize()

    baseline = torch.cuda.memory_allocated() if cuda else _current_rss_bytes()
    start = time.perf_counter()
    step()  # also the warm-up
    first = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    times = []
    budget_start = time.perf_counter()
    for index in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        minimum = 3 if first < 10 else 2  # very long cases: two timed steps are enough
        if index + 1 >= minimum and time.perf_counter() - budget_start > max_seconds:
            break  # then stop at the time budget
    return {
        "median_ms": 1000 * statistics.median(times),
        "times_ms": [round(1000 * t, 3) for t in times],
        "first_ms": round(1000 * first, 3),
        "peak_mib": round((peak - baseline) / 2**20, 1),
        "threads": torch.get_num_threads(),
    }


def _run_subprocess(
    method: str, dtype: str, length: int, repeats: int, max_seconds: float, threads: int, device: str
) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_attention", "--case", method, dtype, str(length)]
    command += ["--repeats", str(repeats), "--max-seconds", str(max_seconds), "--threads", str(threads)]
    command += ["--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed: {tail[:200]}"}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def _ratio(numerator: dict | None, denominator: dict | None) -> float | None:
    if not numerator or not denominator or "median_ms" not in numerator or "median_ms" not in denominator:
        return None
    return round(numerator["median_ms"] / denominator["median_ms"], 3)


def _ratios(rows: list[dict]) -> dict:
    index = {(r["method"], r["dtype"], r["T"]): r for r in rows}
    ratios: dict = {}
    for dtype in ("fp32", "bf16"):
        lengths = sorted({r["T"] for r in rows})
        ratios[dtype] = {
            "torch_mha_over_fast": {
                t: _ratio(index.get(("torch_mha", dtype, t)), index.get(("fast", dtype, t))) for t in lengths
            },
            "recording_over_fast": {
                t: _ratio(index.get(("recording", dtype, t)), index.get(("fast", dtype, t))) for t in lengths
            },
            "fast_over_linear_at_8192": _ratio(
                index.get(("fast", dtype, 8192)), index.get(("linear", dtype, 8192))
            ),
            "linear_growth_1024_to_8192": _ratio(
                index.get(("linear", dtype, 8192)), index.get(("linear", dtype, 1024))
            ),
            "fast_growth_1024_to_8192": _ratio(
                index.get(("fast", dtype, 8192)), index.get(("fast", dtype, 1024))
            ),
        }
    return ratios


def _markdown(result: dict) -> str:
    lines = [
        f"# Self-attention forward+backward, B={BATCH}, D={EMBED_DIM}, {NUM_HEADS} heads",
        "",
        f"Command: `{result['command']}`; threads: {result['threads']}; memory: {result['memory_method']}",
        "",
        "| T | method | dtype | median ms | peak MiB | status |",
        "| ---: | --- | --- | ---: | ---: | --- |",
    ]
    for row in result["rows"]:
        median = f"{row['median_ms']:.1f}" if "median_ms" in row else "-"
        peak = f"{row['peak_mib']:.0f}" if "peak_mib" in row else "-"
        lines.append(
            f"| {row['T']} | {row['method']} | {row['dtype']} | {median} | {peak} | {row['status']} |"
        )
    lines += ["", "## Ratios (measured side by side in this run)", ""]
    for dtype, values in result["ratios"].items():
        for name, value in values.items():
            if isinstance(value, dict):
                value = ", ".join(f"T={t}: {v}" for t, v in value.items() if v is not None)
            lines.append(f"- {dtype} {name}: {value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T in {128, 512}, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed iterations per case")
    parser.add_argument(
        "--max-seconds", type=float, default=30.0, help="time budget per case after 3 repeats"
    )
    parser.add_argument("--memory-cap-gib", type=float, default=6.0, help="skip explicit paths above this")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (1: stable on a shared machine)"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None, help="only these methods")
    parser.add_argument("--lengths", nargs="+", type=int, default=None, help="only these sequence lengths T")
    parser.add_argument(
        "--name",
        default=None,
        help="results file stem under benchmarks/results (default: attention, or attention_cuda with --device cuda)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "DTYPE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the multiattn command does (multiattn/runtime.py)
    repeats = args.repeats or (3 if args.quick else 7)
    if args.case:
        method, dtype, length = args.case
        print(
            json.dumps(
                run_case(method, dtype, int(length), repeats, args.max_seconds, args.threads, args.device)
            )
        )
        return 0

    rows = []
    cases = [
        (method, length)
        for method, length in _cases(args.quick)
        if (args.methods is None or method in args.methods)
        and (args.lengths is None or length in args.lengths)
    ]
    for method, length in cases:
        for dtype in ("fp32", "bf16"):
            row = {"method": method, "dtype": dtype, "T": length}
            estimate = _explicit_bytes(length) / 2**30
            if method == "recording" and estimate > args.memory_cap_gib:
                row["status"] = f"skipped: memory (~{estimate:.1f} GiB > {args.memory_cap_gib:g} GiB cap)"
            else:
                row.update(
                    _run_subprocess(
                        method, dtype, length, repeats, args.max_seconds, args.threads, args.device
                    )
                )
            print(json.dumps(row), flush=True)
            rows.append(row)
    threads = next((r["threads"] for r in rows if "threads" in r), None)
    result = {
        "command": "python -m benchmarks.bench_attention " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "config": {"batch": BATCH, "embed_dim": EMBED_DIM, "num_heads": NUM_HEADS, "repeats": repeats},
        "threads": threads,
        "device": args.device,
        "memory_method": "torch.cuda.max_memory_allocated minus the allocation before the first step"
        if args.device.startswith("cuda")
        else "ru_maxrss of a fresh subprocess per case minus its RSS before the first step",
        "rows": rows,
        "ratios": _ratios(rows),
    }
    name = args.name or ("attention" if args.device == "cpu" else "attention_cuda")
    write_results(name, result, _markdown(result), indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
