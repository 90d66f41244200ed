"""A fit of the tiny config SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends exactly
like an uninterrupted run of the same seed (CPU)."""

from __future__ import annotations

from tests.helpers.resume import check_sigkill_resume


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    # 256 images / batch 32 = 8 steps per epoch; step 11 is in the middle of the second epoch.
    check_sigkill_resume("stn", tmp_path, kill_step=11, steps=16, monitor="val/acc")
