"""The multiattn command: help, app dispatch, LightningCLI fit/resume, safe checkpoints, DDP."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from multiattn import cli
from multiattn.checkpoint import load_checkpoint
from multiattn.io import UserError
from tests.helpers.processes import run_cli

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, name: str, *, max_epochs: int = 2, extra_trainer: str = "") -> Path:
    root = tmp_path / name
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        f"""
seed_everything: 7
trainer:
  default_root_dir: {root}
  max_epochs: {max_epochs}
  accelerator: cpu
  devices: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
{extra_trainer}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {root}/checkpoints, save_last: true, monitor: val/loss, filename: best}}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {root}/checkpoints, save_last: true, every_n_train_steps: 1, save_top_k: 0}}
    - class_path: multiattn.tasks.common.callbacks.ExactResume
      init_args: {{seed: 7}}
model:
  class_path: tests.helpers.toy.ToyModule
data:
  class_path: tests.helpers.toy.ToyDataModule
"""
    )
    return cfg


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ["fit", "validate", "test", "predict", "caption", "classify", "transcribe", "report"]:
        assert f"  {name}" in out


def test_unknown_command_fails(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_closed_output_pipe_ends_quietly():
    """`multiattn configs | head -1`: the reader leaves early; no traceback, no error line."""
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)  # a reader gone before the first line
    reader.wait()
    writer = subprocess.run(
        [sys.executable, "-c", "import sys; from multiattn.cli import main; sys.exit(main(['configs']))"],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    reader.stdin.close()
    assert writer.returncode == 1
    assert "Traceback" not in writer.stderr and "BrokenPipe" not in writer.stderr, writer.stderr


def test_fit_writes_checkpoints_and_resumes(tmp_path):
    cfg = write_config(tmp_path, "run", max_epochs=1)
    result = run_cli("fit", "-c", str(cfg))
    assert result.returncode == 0, result.stderr[-2000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    step_before = load_checkpoint(last)["global_step"]
    assert step_before == 8  # 64 samples / batch 8, one epoch

    # Resume for one more epoch; also proves config.yaml may be overwritten.
    result = run_cli("fit", "-c", str(cfg), "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(last)["global_step"] == 16


def _checkpoint_callbacks(config: Path) -> list[dict]:
    """``config``'s ModelCheckpoint callbacks, to run on the toy task: a placeholder ``dirpath``,
    the monitored metric swapped for one that never improves after the first epoch, and step
    intervals shortened so the toy's 8-step epochs see them."""
    callbacks = []
    for callback in yaml.safe_load(config.read_text())["trainer"].get("callbacks", []):
        if not callback["class_path"].endswith(".ModelCheckpoint"):
            continue
        args = {**callback.get("init_args", {}), "dirpath": "DIRPATH"}
        if args.get("monitor"):
            args.update(monitor="val/constant", mode="min")
        if args.get("every_n_train_steps"):
            args["every_n_train_steps"] = 3
        callbacks.append({"class_path": callback["class_path"], "init_args": args})
    return callbacks


_LAYOUTS: dict[str, str] = {}  # one config per distinct checkpoint layout (the rest repeat it)
for _config in sorted((ROOT / "configs").glob("*.yaml")):  # the tiny ones too: tests resume them
    _LAYOUTS.setdefault(yaml.safe_dump(_checkpoint_callbacks(_config)), _config.name)


@pytest.mark.parametrize("config_name", sorted(_LAYOUTS.values()))
def test_config_keeps_last_ckpt_at_the_final_epoch_when_the_metric_stops_improving(tmp_path, config_name):
    # Lightning 2.6 writes save_last's last.ckpt only beside a new top-k checkpoint, so a run
    # whose metric stopped improving would resume ("--ckpt_path last") from its best epoch.
    root = tmp_path / "run"
    callbacks = yaml.safe_dump(_checkpoint_callbacks(ROOT / "configs" / config_name))
    callbacks = callbacks.replace("DIRPATH", str(root / "checkpoints"))
    cfg = write_config(tmp_path, "run", max_epochs=3)
    text = cfg.read_text()
    head, tail = text.split("  callbacks:\n", 1)
    cfg.write_text(
        head
        + "  callbacks:\n"
        + "\n".join("    " + line for line in callbacks.splitlines())
        + "\nmodel:"
        + tail.split("\nmodel:", 1)[1]
    )
    result = run_cli("fit", "-c", str(cfg))
    assert result.returncode == 0, result.stderr[-2000:]
    lasts = sorted(p.name for p in (root / "checkpoints").glob("last*.ckpt"))
    assert lasts == ["last.ckpt"], lasts
    final = load_checkpoint(root / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 24 and final["epoch"] == 2  # 3 epochs of 8 steps
    assert load_checkpoint(root / "checkpoints" / "best.ckpt")["global_step"] == 8  # epoch 0 stays best


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    full = write_config(tmp_path, "full", max_epochs=2)
    assert run_cli("fit", "-c", str(full)).returncode == 0

    killed = write_config(tmp_path, "killed", max_epochs=2)
    # Killed at step 11: mid-way through the second epoch (8 batches per epoch).
    result = run_cli("fit", "-c", str(killed), "--model.kill_at_step", "11")
    assert result.returncode == -9, result.stderr[-2000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 11
    result = run_cli("fit", "-c", str(killed), "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-2000:]

    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(last)
    assert a["global_step"] == b["global_step"] == 16
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)


class _Evil:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_evil_checkpoint(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:
        torch.save({"state_dict": {}, "payload": _Evil(marker)}, f, pickle_protocol=pickle.HIGHEST_PROTOCOL)


def test_crafted_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    _write_evil_checkpoint(evil, marker)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(evil)
    assert not marker.exists()

    cfg = write_config(tmp_path, "run", max_epochs=1)
    result = run_cli("fit", "-c", str(cfg), "--ckpt_path", str(evil))
    assert result.returncode == 2
    assert "refusing to load" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x80\x02}q", b"junk", None])
def test_missing_or_truncated_checkpoint_gets_one_line_error(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_truncated_real_checkpoint(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.randn(64, 64)}}, good)
    data = good.read_bytes()
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(bad)


def test_ddp_spawn_two_cpu_processes(tmp_path):
    cfg = write_config(
        tmp_path,
        "ddp",
        max_epochs=1,
        extra_trainer="  strategy: ddp_spawn",
    )
    result = run_cli("fit", "-c", str(cfg), "--trainer.devices", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4  # 64 samples / (8 per batch x 2 processes)
