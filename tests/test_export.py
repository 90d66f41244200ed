"""``multiattn export``: the classifier end to end and the captioning / speech encoders, as
torch.export programs and ONNX models, give the eager model's outputs on inputs of another batch
size (and, for speech, another length) than the ones they were traced with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import multiattn
from multiattn.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))


def _eager(task_ckpt: Path, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    spec = multiattn.load(task_ckpt, device="cpu").export_spec()
    with torch.inference_mode():
        return [t.float() for t in spec.module(*inputs)]


def _inputs(task: str) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(7)
    if task == "stn":
        return (torch.rand(5, 1, 42, 42, generator=generator),)
    if task == "captioning":
        return (torch.randn(1, 3, 96, 96, generator=generator),)
    return (0.1 * torch.randn(2, 12_345, generator=generator), torch.tensor([12_345, 8_000]))


@pytest.mark.parametrize("task", ["stn", "captioning", "asr"])
def test_torch_export_matches_eager(tiny_checkpoints, tmp_path, capsys, task):
    out = tmp_path / f"{task}.pt2"
    assert (
        cli_main(
            [
                "export",
                "--ckpt",
                str(tiny_checkpoints[task][0]),
                "--format",
                "torch-export",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "max |exported - eager|" in capsys.readouterr().out
    inputs = _inputs(task)
    got = torch.export.load(out).module()(*inputs)
    for a, b in zip(got, _eager(tiny_checkpoints[task][0], inputs), strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a.float(), b, atol=1e-4)


@pytest.mark.skipif(
    not HAS_ONNX, reason='needs pip install "multiattn[export]" (onnx, onnxscript, onnxruntime)'
)
@pytest.mark.parametrize("task", ["stn", "captioning"])
def test_onnx_matches_eager_in_onnxruntime(tiny_checkpoints, tmp_path, capsys, task):
    import onnxruntime

    out = tmp_path / f"{task}.onnx"
    assert (
        cli_main(["export", "--ckpt", str(tiny_checkpoints[task][0]), "--format", "onnx", "--out", str(out)])
        == 0
    )
    capsys.readouterr()
    inputs = _inputs(task)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {name: t.numpy() for name, t in zip(names, inputs)})
    for a, b in zip(got, _eager(tiny_checkpoints[task][0], inputs), strict=True):
        assert np.allclose(a, b.numpy(), atol=1e-4)


def test_existing_out_is_kept_and_bad_flags_are_one_line(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    out.write_text("mine")
    ckpt = str(tiny_checkpoints["stn"][0])
    assert cli_main(["export", "--ckpt", ckpt, "--format", "torch-export", "--out", str(out)]) == 2
    assert out.read_text() == "mine"
    with pytest.raises(SystemExit) as exit_:  # argparse's exit, one line
        cli_main(["export", "--ckpt", ckpt, "--format", "tflite", "--out", str(out)])
    assert exit_.value.code == 2
    assert (
        cli_main(
            [
                "export",
                "--ckpt",
                str(tmp_path / "none.ckpt"),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "exists" in lines[0] and "--format" in lines[1] and "none.ckpt" in lines[2]
