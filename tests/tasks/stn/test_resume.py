"""A fit of the tiny config SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends exactly
like an uninterrupted run of the same seed (CPU)."""

from __future__ import annotations

from pathlib import Path

from multiattn.checkpoint import load_checkpoint
from tests.helpers.resume import ROOT, assert_same_end, fit, kill_at, newest_last

CONFIG = ROOT / "configs" / "stn_tiny.yaml"
CHECKPOINTS = Path("outputs") / "stn_tiny" / "checkpoints"


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    full = fit(CONFIG, CHECKPOINTS, tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]

    # 256 images / batch 32 = 8 steps per epoch; step 11 is in the middle of the second epoch.
    killed = fit(CONFIG, CHECKPOINTS, tmp_path / "killed", *kill_at(11))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert load_checkpoint(newest_last(tmp_path / "killed" / CHECKPOINTS))["global_step"] == 11
    resumed = fit(CONFIG, CHECKPOINTS, tmp_path / "killed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(
        tmp_path / "full" / CHECKPOINTS, tmp_path / "killed" / CHECKPOINTS, steps=16, monitor="val/acc"
    )
