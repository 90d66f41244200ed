"""Where the benchmarks write their results, and how."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from multiattn.io import atomic_open, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def shown_path(path: Path | str) -> str:
    """``path`` as results record it: relative to the repository when inside it (results are
    committed and must not name the machine they ran on), as given otherwise."""
    resolved = Path(path).resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)


def describe_cpu(cpuinfo: str, cpus: int | None) -> str:
    """One line naming a processor from the text of ``/proc/cpuinfo``: its model, the logical CPUs
    and the matrix units that decide how fast ``bf16-mixed`` runs on a CPU (AMX tiles: bf16 matmul
    several times fp32; AVX-512 BF16 alone: little faster), so every figure says what it ran on."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = " ".join(value.split())
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    units = ["AMX" if "amx_bf16" in flags else "no AMX"]
    if "avx512_bf16" in flags:
        units.insert(0, "AVX-512 BF16")
    return f"{model or platform.processor() or platform.machine()}, {cpus or '?'} CPUs, {', '.join(units)}"


def machine() -> str:
    """The machine a benchmark ran on, as results record it: the processor and the GPU, if any."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpuinfo = handle.read()
    except OSError:  # not Linux: no flags to read
        cpuinfo = ""
    described = describe_cpu(cpuinfo, os.cpu_count())
    import torch

    if torch.cuda.is_available():
        described += f"; GPU {torch.cuda.get_device_name(0)}"
    return described


def write_results(stem: str, result: dict[str, Any], markdown: str, *, indent: int = 1) -> None:
    """``results/<stem>.json`` and ``results/<stem>.md`` (each written atomically, both naming the
    machine); prints the Markdown."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {**result, "machine": result.get("machine") or machine()}
    markdown = markdown.rstrip("\n") + f"\n\nMachine: {result['machine']}.\n"
    write_json(RESULTS / f"{stem}.json", result, indent=indent)
    with atomic_open(RESULTS / f"{stem}.md", "w", encoding="utf-8") as handle:
        handle.write(markdown)
    print(markdown)
