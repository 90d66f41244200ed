"""``scripts/gpu_run.sh``: one call registers the checkout's entry points, runs the benchmark
within its budget and leaves the log and the results in ``$OUT`` (here a dry run of one part)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_launcher_dry_run_writes_log_and_results(tmp_path: Path) -> None:
    out, site, wheels = tmp_path / "out", tmp_path / "site", tmp_path / "no_wheels"
    wheels.mkdir()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "OUT": str(out),
        "SITE": str(site),
        "WHEELS": str(wheels),
        "SKIP_TESTS": "1",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_run.sh"), "--dry-run", "--parts", "attention"]
        + ["--work", str(tmp_path / "work")],
        cwd=tmp_path,  # the script finds the checkout itself
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (out / "gpu_run.log").read_text()
    assert "== versions" in log and "bench_gpu --budget 300 --dry-run" in log
    (entry_points,) = site.glob("multiattn-*.dist-info/entry_points.txt")
    assert "[multiattn.apps]" in entry_points.read_text()
    result = json.loads((out / "gpu_dry_run.json").read_text())
    assert result["parts"]["attention"]["status"] == "ok"
    assert (out / "gpu_dry_run.md").exists()
