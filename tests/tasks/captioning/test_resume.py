"""A captioning fit of the tiny config SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends
exactly like an uninterrupted run of the same seed (CPU): same training order, same reference
caption drawn per (epoch, image), same weights bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from multiattn.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "captioning_tiny.yaml"
CHECKPOINTS = Path("outputs") / "captioning_tiny" / "checkpoints"
# Every step also writes a last checkpoint, so the kill lands right after a mid-epoch checkpoint.
EVERY_STEP = [
    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
    f"--trainer.callbacks.dirpath={CHECKPOINTS}",
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


def newest_last(workdir: Path) -> Path:
    """The checkpoint ``--ckpt_path last`` resumes from: the newest ``last*.ckpt`` of the dirpath
    (several ModelCheckpoints share it, so Lightning versions their names ``last``, ``last-v1``...)."""
    candidates = sorted((workdir / CHECKPOINTS).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    assert candidates, f"no last checkpoint under {workdir / CHECKPOINTS}"
    return candidates[-1]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    full = fit(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]

    # 64 scenes / batch 16 = 4 steps per epoch; step 6 is in the middle of the second epoch.
    killed = fit(
        tmp_path / "killed",
        "--trainer.callbacks+=tests.helpers.killer.KillAtStep",
        "--trainer.callbacks.step=6",
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert load_checkpoint(newest_last(tmp_path / "killed"))["global_step"] == 6
    resumed = fit(tmp_path / "killed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = load_checkpoint(newest_last(tmp_path / "full"))
    b = load_checkpoint(newest_last(tmp_path / "killed"))
    assert a["global_step"] == b["global_step"] == 8
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    # The validation metric the best checkpoint was chosen by is the same too.
    best_a = [v for k, v in a["callbacks"].items() if "val/bleu_4" in k][0]["best_model_score"]
    best_b = [v for k, v in b["callbacks"].items() if "val/bleu_4" in k][0]["best_model_score"]
    assert float(best_a) == float(best_b)
