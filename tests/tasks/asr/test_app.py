"""``multiattn transcribe``: JSON with words and times, overlays, bad files, long recordings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from multiattn.tasks.asr.app import main
from tests.helpers.asr import fit_asr_tiny
from tests.helpers.processes import metrics_by_process_count, run_cli

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
ROOT = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint of the tiny config (trained for two epochs) and its test audio folder."""
    root = tmp_path_factory.mktemp("asr_app")
    fit_asr_tiny(root)
    return root / "ckpt" / "last.ckpt", root / "data" / "tiny-seed0" / "test"


def test_json_has_text_and_word_times(trained, tmp_path: Path, capsys) -> None:
    ckpt, audio = trained
    files = sorted(audio.glob("*.flac"))[:2]
    overlays = tmp_path / "overlays"
    code = main(
        [
            *map(str, files),
            "--ckpt",
            str(ckpt),
            "--json",
            "--beam-size",
            "2",
            "--ctc-weight",
            "0.5",
            "--lm-weight",
            "0.5",  # the tiny config trains a language model
            "--overlay-dir",
            str(overlays),
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in records] == [str(f) for f in files]
    for record in records:
        assert {"file", "text", "words", "duration", "segments"} <= set(record)
        assert isinstance(record["text"], str)
        for word in record["words"]:
            assert set(word) == {"word", "start", "end", "probability"}
            assert 0.0 <= word["start"] <= word["end"] <= record["duration"] + 0.1
    assert sorted(p.name for p in overlays.glob("*.png")) == sorted(f"{f.stem}.png" for f in files)


def test_bad_files_are_one_line_errors_and_others_still_run(trained, tmp_path: Path, capsys) -> None:
    ckpt, audio = trained
    good = sorted(audio.glob("*.flac"))[0]
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(8000, dtype=np.float32), 16000)
    code = main(
        [
            str(good),
            str(not_audio),
            str(silent),
            str(tmp_path / "missing.flac"),
            "--ckpt",
            str(ckpt),
            "--json",
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3
    assert any("notes.wav" in e for e in errors) and any("silent" in e for e in errors)
    assert any("missing.flac" in e and "not found" in e for e in errors)


def test_long_recording_is_segmented_and_joined(trained, tmp_path: Path, capsys) -> None:
    ckpt, audio = trained
    pieces = [soundfile.read(f, dtype="float32")[0] for f in sorted(audio.glob("*.flac"))[:4]]
    gap = np.zeros(4000, dtype=np.float32)
    long = np.concatenate([x for p in pieces for x in (p, gap)])
    path = tmp_path / "long.wav"
    soundfile.write(path, np.stack([long, long], axis=1), 22050)  # stereo, another rate
    code = main(
        [
            str(path),
            "--ckpt",
            str(ckpt),
            "--json",
            "--max-seconds",
            "3",
            "--beam-size",
            "1",
            "--mode",
            "attention",
            "--overlay-dir",
            str(tmp_path / "ov"),
        ]
    )
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["overlay_pieces"]) >= 2  # decoded in pieces, one overlay each
    assert all(Path(p).is_file() for p in record["overlay_pieces"])
    for segment in record["segments"]:
        assert set(segment) == {"start", "end", "text", "words"}
        if segment["words"]:  # (a piece whose tokens the CTC alignment cannot place has none)
            assert segment["text"] == " ".join(w["word"] for w in segment["words"])
    assert record["duration"] == pytest.approx(len(long) / 22050, abs=0.01)
    starts = [w["start"] for w in record["words"]]
    assert starts == sorted(starts)


def test_user_errors_exit_2(trained, capsys) -> None:
    ckpt, audio = trained
    file = str(sorted(audio.glob("*.flac"))[0])
    assert main([file, "--ckpt", str(ckpt), "--ctc-weight", "1.5"]) == 2
    assert main([file, "--ckpt", "/nonexistent.ckpt"]) == 2
    assert main([file, "--ckpt", str(ckpt), "--lm-weight", "-0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "ctc-weight" in err[0] and "nonexistent.ckpt" in err[1] and "lm-weight" in err[2]


def test_lm_weight_needs_a_checkpoint_with_a_language_model(trained, tmp_path: Path, capsys) -> None:
    from multiattn.checkpoint import load_checkpoint

    ckpt, audio = trained
    checkpoint = load_checkpoint(ckpt)
    checkpoint["hyper_parameters"]["language_model"]["hidden_dim"] = 0
    checkpoint["state_dict"] = {
        k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("language_model.")
    }
    bare = tmp_path / "bare.ckpt"
    torch.save(checkpoint, bare)
    file = str(sorted(audio.glob("*.flac"))[0])
    assert main([file, "--ckpt", str(bare), "--lm-weight", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no language model" in err[0] and "bare.ckpt" in err[0]
    assert main([file, "--ckpt", str(bare)]) == 0  # its default decoding still works


VALIDATE = """
import sys, warnings
import yaml
from multiattn.checkpoint import load_system
from multiattn.tasks.asr.data import ASRDataModule
from multiattn.tasks.asr.system import ASRSystem
from tests.helpers.processes import validate_metrics

warnings.filterwarnings("ignore")
ckpt, data_dir, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = yaml.safe_load(open("configs/asr_tiny.yaml"))["data"]["init_args"]
data = ASRDataModule(**{**args, "data_dir": data_dir, "batch_size": 3})
system = load_system(ASRSystem, ckpt, log_overlays=False)
# use_distributed_sampler=False as in configs/asr*.yaml: the bucket sampler shards itself.
validate_metrics(system, data, devices, use_distributed_sampler=False)
"""


def test_validation_wer_over_two_processes_equals_one_process(trained) -> None:
    # WER is a corpus ratio, not a mean of per-process ratios: every process scores every
    # utterance once (tasks/common/distributed.py).
    ckpt, audio = trained
    results = metrics_by_process_count(VALIDATE, str(ckpt), str(audio.parents[1]))
    assert {"val/wer", "val/cer"} <= set(results[1])
    for name in ("val/wer", "val/cer"):
        assert results[2][name] == pytest.approx(results[1][name], abs=1e-6), name


def test_fit_on_two_processes_trains_validates_and_logs_overlays(trained, tmp_path) -> None:
    # Two regressions at once: Lightning could not put its sampler into the bucket batch sampler
    # (TypeError), and the overlay writer on rank 0 asked Trainer.log_dir, a collective: a hang.
    _, audio = trained
    out = tmp_path / "out"
    run = run_cli(
        "fit",
        "-c",
        str(ROOT / "configs/asr_tiny.yaml"),
        "--trainer.strategy=ddp_spawn",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.max_epochs=1",
        f"--data.init_args.data_dir={audio.parents[1]}",
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}",
        cwd=tmp_path,  # the config's other relative outputs/ paths (best.ckpt) land in tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert list(out.rglob("val_overlay_0.png"))
