"""Commands in fresh interpreters: the CLI (:func:`run_cli`), and one checkpoint validated with one
and with several CPU processes (DDP).

Each task's test passes a short program that builds its system and data module and calls
:func:`validate_metrics`; :func:`metrics_by_process_count` runs it per process count and returns
the logged metrics, so a test can check that corpus metrics do not depend on the process count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m multiattn.cli ARGS`` in a fresh interpreter on this tree (one thread), output captured."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JSONARGPARSE_DEPRECATION_WARNINGS": "off",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "multiattn.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def validate_metrics(system: Any, data: Any, devices: int, **trainer_options: Any) -> None:
    """In the child: ``trainer.validate`` on ``devices`` CPU processes; prints the metrics as JSON."""
    import lightning

    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **trainer_options,
    )
    (metrics,) = trainer.validate(system, datamodule=data, verbose=False)
    print(json.dumps({name: float(value) for name, value in metrics.items()}))


def metrics_by_process_count(program: str, *args: str, counts: tuple[int, ...] = (1, 2)) -> dict[int, dict]:
    """Run ``program`` (``python -c``; its argv: ``args`` then the process count) once per count."""
    results = {}
    for devices in counts:
        run = subprocess.run(
            [sys.executable, "-c", program, *args, str(devices)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        results[devices] = json.loads(run.stdout.strip().splitlines()[-1])
    return results
