"""multiattn.runtime.keep_freed_memory: glibc malloc keeps freed blocks for reuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from multiattn import runtime

ROOT = Path(__file__).resolve().parents[1]

# Steps that allocate and free 0.1-7 MB tensors of changing sizes, as a batched search does; the
# second round's minor page faults show whether freed memory was reused or mapped afresh.
PROGRAM = """
import resource, sys, torch
from multiattn.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False

def steps(count):
    for n in range(count):
        a = torch.ones((1 << 18) * (1 + n % 7))
        b = torch.ones(1 << 19)
        del a
        c = torch.ones((1 << 17) * (1 + n % 5))
        del b, c

steps(35)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps(35)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(mode: str, **env: str) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    applied, faults = result.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_freed_blocks_are_reused_without_page_faults():
    applied, faults = _run("tuned")
    assert applied == "True"
    assert faults < 50, faults  # glibc's defaults: ~1,000 here (each big block mapped afresh)


def test_opt_out_keeps_the_defaults(monkeypatch):
    monkeypatch.setenv("MULTIATTN_MALLOC", "default")
    assert runtime.keep_freed_memory() is False


def test_not_applied_off_linux(monkeypatch):
    monkeypatch.delenv("MULTIATTN_MALLOC", raising=False)
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime.keep_freed_memory() is False


# Registered before multiattn.runtime is imported, so it runs after runtime's own atexit hook.
EXIT_PROGRAM = """
import atexit, sys
import torch.distributed as dist
atexit.register(lambda: print("initialised at exit:", dist.is_initialized()))
import multiattn.runtime
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
print("initialised:", dist.is_initialized())
"""


def test_importing_runtime_destroys_a_live_process_group_at_exit(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", EXIT_PROGRAM, str(tmp_path / "init")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.split("\n")[:2] == ["initialised: True", "initialised at exit: False"], result.stdout
