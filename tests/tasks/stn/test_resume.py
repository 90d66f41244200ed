"""A fit of the tiny config SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends exactly
like an uninterrupted run of the same seed (CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from multiattn.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "stn_tiny.yaml"
# Every step also writes last.ckpt, so the kill lands after a mid-epoch checkpoint.
EVERY_STEP = [
    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
    "--trainer.callbacks.dirpath=outputs/stn_tiny/checkpoints",
    "--trainer.callbacks.every_n_train_steps=1",
    "--trainer.callbacks.save_top_k=0",
    "--trainer.callbacks.save_last=true",
]


def fit(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    workdir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "JSONARGPARSE_DEPRECATION_WARNINGS": "off",
    }
    return subprocess.run(
        [sys.executable, "-m", "multiattn.cli", "fit", "-c", str(CONFIG), *EVERY_STEP, *extra],
        cwd=workdir,  # the config's relative data/ and outputs/ paths land in the test's folder
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    full = fit(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]

    # 256 images / batch 32 = 8 steps per epoch; step 11 is in the middle of the second epoch.
    killed = fit(
        tmp_path / "killed",
        "--trainer.callbacks+=tests.helpers.killer.KillAtStep",
        "--trainer.callbacks.step=11",
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = tmp_path / "killed" / "outputs" / "stn_tiny" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 11
    resumed = fit(tmp_path / "killed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = load_checkpoint(tmp_path / "full" / "outputs" / "stn_tiny" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(last)
    assert a["global_step"] == b["global_step"] == 16
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    # The validation metric the best checkpoint was chosen by is the same too.
    best_a = [v for k, v in a["callbacks"].items() if "val/acc" in k][0]["best_model_score"]
    best_b = [v for k, v in b["callbacks"].items() if "val/acc" in k][0]["best_model_score"]
    assert float(best_a) == float(best_b)
