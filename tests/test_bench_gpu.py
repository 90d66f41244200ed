"""``benchmarks/bench_gpu.py --dry-run``: every part of the GPU benchmark runs, at tiny sizes on the
CPU, and writes its tables; so the run on a GPU machine works the first time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_gpu import PARTS, markdown
from benchmarks.gpu_clock import batch_size_of, parse_target

ROOT = Path(__file__).resolve().parents[1]


def test_parse_target() -> None:
    assert parse_target("val/acc>=0.98") == ("val/acc", ">=", 0.98)
    assert parse_target(" val/wer <= 0.1 ") == ("val/wer", "<=", 0.1)
    assert parse_target("") is None
    with pytest.raises(ValueError, match="MULTIATTN_CLOCK_TARGET"):
        parse_target("val/acc=0.98")


def test_batch_size_of_counts_items_and_audio() -> None:
    import torch

    from multiattn.tasks.asr.data import SpeechBatch
    from multiattn.tasks.stn.data import STNBatch

    speech = SpeechBatch(torch.zeros(2, 32000), torch.tensor([16000, 8000]), ["a", "b"], None, ["", ""])
    assert batch_size_of(speech) == (2, 1.5)
    assert batch_size_of(STNBatch(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))) == (3, 0.0)


@pytest.mark.slow
def test_dry_run_runs_every_part(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", JSONARGPARSE_DEPRECATION_WARNINGS="off")
    out = tmp_path / "out"
    env["OUT"] = str(out)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gpu", "--dry-run", "--work", str(tmp_path / "work")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "work" / "gpu_dry_run.json").read_text())
    assert list(result["parts"]) == list(PARTS)
    assert {name: part["status"] for name, part in result["parts"].items()} == dict.fromkeys(PARTS, "ok")
    assert result["dry_run"] and result["environment"]["torch"]
    parts = result["parts"]
    for name in ("stn", "captioning", "asr"):
        clock = parts[name]["clock"]
        assert clock["steps"] > 0 and clock["items_per_s"] > 0, name
        assert 0 <= clock["data_wait_share"] < 1, name
        assert clock["validations"], name
    assert parts["asr"]["clock"]["audio_seconds_per_s"] > 0
    assert {r["task"] for r in parts["prepare"]["rows"]} == {"stn", "captioning", "asr"}
    runs = {(r["task"], r["precision"]): r for r in parts["throughput"]["rows"]}
    assert set(runs) == {(t, p) for t in ("stn", "captioning", "asr") for p in ("bf16-mixed", "32-true")}
    assert all(r["steps"] > 0 and r["items_per_s"] > 0 for r in runs.values())
    modes = {r["mode"] for r in parts["real_captioning"]["rows"] + parts["real_asr"]["rows"] if "mode" in r}
    assert modes == {"fp32", "bf16", "bf16_compiled"}
    assert all(r["identical_captions"] for r in parts["decode_captioning"]["rows"])
    assert [r["batch"] for r in parts["decode_asr"]["rows"]] == [2, 4]
    attention = [r for r in parts["attention"]["rows"] if "method" in r]
    assert {r["method"] for r in attention} == {"sdpa", "matmul", "recording", "torch_mha"}
    text = (tmp_path / "work" / "gpu_dry_run.md").read_text()
    assert text == markdown(result)
    for heading in (
        "## Task default configs",
        "## Captioning decoder at COCO scale",
        "## ASR at LibriSpeech scale",
    ):
        assert heading in text
    assert sorted(p.name for p in out.iterdir()) == ["gpu_dry_run.json", "gpu_dry_run.md"]  # copied to $OUT
    assert not (ROOT / "benchmarks" / "results" / "gpu_dry_run.json").exists()
