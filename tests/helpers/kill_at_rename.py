"""Kill a ``multiattn`` command just before each of its renames, one run per rename (fault tests).

Every file the project writes for a user lands through ``os.replace`` / ``os.rename`` or the folder
exchange of :mod:`multiattn.io`; counting those calls in an uninterrupted run and SIGKILLing a
forked run just before the n-th one, for every n, visits every state a killed run can leave.

Run as ``python -m tests.helpers.kill_at_rename OUT LOG ARGV...`` (what :func:`kill_at_every_rename`
does): ``OUT`` is restored to its state before each killed run; ``LOG`` gets JSON lines
``{"total", "new"}``, one ``{"kill_at", "killed", "state"}`` per rename, then ``{"final", "state",
"beside"}`` from a last uninterrupted run (which also removes what the killed runs left).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def fingerprint(folder: str | os.PathLike) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> hex of its bytes); ``{}`` for no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes().hex()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def kill_at_every_rename(
    out: Path, argv: list[str], log: Path
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Run ``multiattn ARGV`` whole, then killed before each of its renames; ``(head, kills, final)``."""
    run = subprocess.run(
        [sys.executable, "-m", "tests.helpers.kill_at_rename", str(out), str(log), *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return lines[0], lines[1:-1], lines[-1]


def _main() -> None:
    import shutil
    import signal

    import multiattn.io as io
    from multiattn.cli import main

    out, log, *argv = sys.argv[1:]
    calls, kill_at = [0], [0]

    def counted(function):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at[0]:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return wrapper

    os.replace, os.rename, io._exchange = counted(os.replace), counted(os.rename), counted(io._exchange)

    def run(at: int) -> int:
        # In this process (also warms the lazy imports), or in a forked child killed at its at-th call.
        calls[0], kill_at[0] = 0, at
        if at == 0:
            assert main(argv) == 0
            return calls[0]
        pid = os.fork()
        if pid == 0:
            os._exit(0 if main(argv) == 0 else 1)
        status = os.waitpid(pid, 0)[1]
        kill_at[0] = 0
        return status

    sys.stdout = sys.stderr = open(os.devnull, "w")
    backup = out + ".backup"
    if os.path.isdir(out):
        shutil.copytree(out, backup)

    def restore() -> None:
        shutil.rmtree(out, ignore_errors=True)
        if os.path.isdir(backup):
            shutil.copytree(backup, out)

    with open(log, "w") as handle:
        total = run(0)  # an uninterrupted run: how many renames it makes
        handle.write(json.dumps({"total": total, "new": fingerprint(out)}) + "\n")
        for n in range(1, total + 1):
            restore()
            status = run(n)
            killed = os.WIFSIGNALED(status)
            handle.write(json.dumps({"kill_at": n, "killed": killed, "state": fingerprint(out)}) + "\n")
        final = run(0)  # a run after the killed ones removes the staging folders they left
        beside = sorted(p.name for p in Path(out).parent.iterdir())
        handle.write(json.dumps({"final": final, "state": fingerprint(out), "beside": beside}) + "\n")


if __name__ == "__main__":
    _main()
