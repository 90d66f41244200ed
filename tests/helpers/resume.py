"""Shared machinery of the SIGKILL-then-resume tests: run ``multiattn fit`` on a tiny config in a
scratch folder with a checkpoint after every step, kill it at a step, resume, and compare."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from multiattn.checkpoint import load_checkpoint
from tests.helpers.processes import run_cli

ROOT = Path(__file__).resolve().parents[2]


def fit(config: Path, checkpoints: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """``multiattn fit -c config`` in ``workdir`` (the config's relative data/ and outputs/ paths
    land there) with an extra ModelCheckpoint writing ``last`` into ``checkpoints`` every step, so
    a kill lands right after a mid-epoch checkpoint."""
    every_step = [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={checkpoints}",
        "--trainer.callbacks.every_n_train_steps=1",
        "--trainer.callbacks.save_top_k=0",
        "--trainer.callbacks.save_last=true",
    ]
    workdir.mkdir(exist_ok=True)
    return run_cli("fit", "-c", str(config), *every_step, *extra, cwd=workdir, timeout=600)


def kill_at(step: int) -> tuple[str, str]:
    """Extra arguments that SIGKILL the fit right after optimiser step ``step``."""
    return ("--trainer.callbacks+=tests.helpers.killer.KillAtStep", f"--trainer.callbacks.step={step}")


def newest_last(folder: Path) -> Path:
    """The checkpoint ``--ckpt_path last`` resumes from: the newest ``last*.ckpt`` of ``folder``
    (several ModelCheckpoints may share it; Lightning then names them ``last``, ``last-v1``...)."""
    candidates = sorted(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    assert candidates, f"no last checkpoint under {folder}"
    return candidates[-1]


def assert_same_end(full: Path, resumed: Path, *, steps: int, monitor: str) -> None:
    """Both runs ended at ``steps`` with identical weights and the same best ``monitor`` score."""
    a, b = load_checkpoint(newest_last(full)), load_checkpoint(newest_last(resumed))
    assert a["global_step"] == b["global_step"] == steps
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    best_a = [v for k, v in a["callbacks"].items() if monitor in k][0]["best_model_score"]
    best_b = [v for k, v in b["callbacks"].items() if monitor in k][0]["best_model_score"]
    assert float(best_a) == float(best_b)


def check_sigkill_resume(
    task: str, tmp_path: Path, *extra: str, kill_step: int, steps: int, monitor: str
) -> None:
    """``configs/<task>_tiny.yaml`` (with ``extra`` arguments) fitted whole, and fitted again but
    SIGKILLed right after step ``kill_step`` then resumed with ``--ckpt_path last``, end alike
    (:func:`assert_same_end`)."""
    config = ROOT / "configs" / f"{task}_tiny.yaml"
    checkpoints = Path("outputs") / f"{task}_tiny" / "checkpoints"
    full = fit(config, checkpoints, tmp_path / "full", *extra)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = fit(config, checkpoints, tmp_path / "killed", *extra, *kill_at(kill_step))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert load_checkpoint(newest_last(tmp_path / "killed" / checkpoints))["global_step"] == kill_step
    resumed = fit(config, checkpoints, tmp_path / "killed", *extra, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(
        tmp_path / "full" / checkpoints, tmp_path / "killed" / checkpoints, steps=steps, monitor=monitor
    )
