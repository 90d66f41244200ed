"""A captioning fit of the tiny config SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends
exactly like an uninterrupted run of the same seed (CPU): same training order, same reference
caption drawn per (epoch, image), same weights bit for bit."""

from __future__ import annotations

from pathlib import Path

from multiattn.checkpoint import load_checkpoint
from tests.helpers.resume import ROOT, assert_same_end, fit, kill_at, newest_last

CONFIG = ROOT / "configs" / "captioning_tiny.yaml"
CHECKPOINTS = Path("outputs") / "captioning_tiny" / "checkpoints"


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    full = fit(CONFIG, CHECKPOINTS, tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]

    # 64 scenes / batch 16 = 4 steps per epoch; step 6 is in the middle of the second epoch.
    killed = fit(CONFIG, CHECKPOINTS, tmp_path / "killed", *kill_at(6))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert load_checkpoint(newest_last(tmp_path / "killed" / CHECKPOINTS))["global_step"] == 6
    resumed = fit(CONFIG, CHECKPOINTS, tmp_path / "killed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The validation metric the best checkpoint was chosen by is the same too.
    assert_same_end(
        tmp_path / "full" / CHECKPOINTS, tmp_path / "killed" / CHECKPOINTS, steps=8, monitor="val/bleu_4"
    )
