"""A captioning fit of the tiny config SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends
exactly like an uninterrupted run of the same seed (CPU): same training order, same reference
caption drawn per (epoch, image), same weights bit for bit, and the same best validation score."""

from __future__ import annotations

from tests.helpers.resume import check_sigkill_resume


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    # 64 scenes / batch 16 = 4 steps per epoch; step 6 is in the middle of the second epoch.
    check_sigkill_resume("captioning", tmp_path, kill_step=6, steps=8, monitor="val/bleu_4")
