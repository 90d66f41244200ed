"""Each task on the GPU: its tiny config fits with ``accelerator=gpu`` and ``precision=bf16-mixed``,
the app commands run with ``--device cuda`` on the checkpoints, and ``torch.compile`` of each model
gives the eager model's outputs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multiattn.checkpoint import load_system

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("stn", "captioning", "asr")
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")


@contextlib.contextmanager
def _inside(folder: Path):
    """Run with ``folder`` as the working directory (the tiny configs' relative paths land there)."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, device) -> dict[str, Path]:
    """``{task: last.ckpt}`` of one bf16-mixed epoch of each tiny config on the device under test."""
    from multiattn.lightning_cli import build_cli

    root = tmp_path_factory.mktemp("gpu_fit")
    checkpoints = {}
    with _inside(root):
        for task in TASKS:
            build_cli(
                [
                    "fit",
                    "-c",
                    str(ROOT / "configs" / f"{task}_tiny.yaml"),
                    "--trainer.accelerator",
                    "gpu" if device.type == "cuda" else "cpu",
                    "--trainer.precision",
                    "bf16-mixed",
                    "--trainer.max_epochs",
                    "1",
                ]
            )
            checkpoints[task] = root / "outputs" / f"{task}_tiny" / "checkpoints" / "last.ckpt"
    return checkpoints


def _system_class(task: str):
    from multiattn.tasks.asr.system import ASRSystem
    from multiattn.tasks.captioning.system import CaptioningSystem
    from multiattn.tasks.stn.system import STNSystem

    return {"stn": STNSystem, "captioning": CaptioningSystem, "asr": ASRSystem}[task]


@pytest.mark.parametrize("task", TASKS)
def test_tiny_config_fits_on_device_in_bf16(trained, device, task: str) -> None:
    ckpt = trained[task]
    assert ckpt.exists()
    system = load_system(_system_class(task), ckpt)
    parameters = torch.cat([p.detach().flatten().float() for p in system.parameters()])
    assert torch.isfinite(parameters).all()


def _inputs(task: str, folder: Path, ckpt: Path) -> list[str]:
    generator = np.random.default_rng(0)
    if task == "asr":  # two utterances of the tiny corpus the fit generated
        return [str(p) for p in sorted((ckpt.parents[3] / "data").rglob("*.flac"))[:2]]
    paths = []
    for index in range(2):
        path = folder / f"{task}_{index}.png"
        if task == "stn":
            Image.fromarray(generator.integers(0, 255, (42, 42), dtype=np.uint8), mode="L").save(path)
        else:
            Image.fromarray(generator.integers(0, 255, (96, 96, 3), dtype=np.uint8), mode="RGB").save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(
    ("task", "command", "field"),
    [("stn", "classify", "label"), ("captioning", "caption", "caption"), ("asr", "transcribe", "text")],
)
def test_app_command_on_device(
    trained, device, tmp_path: Path, capsys, task: str, command: str, field: str
) -> None:
    from multiattn.cli import main

    inputs = _inputs(task, tmp_path, trained[task])
    assert len(inputs) == 2
    code = main([command, *inputs, "--ckpt", str(trained[task]), "--device", device.type, "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert code == 0
    assert [r["file"] for r in records] == inputs
    assert all(field in r for r in records)


def _model_inputs(task: str, system, device: torch.device) -> tuple:
    generator = torch.Generator().manual_seed(0)
    if task == "stn":
        return (torch.rand(4, 1, 42, 42, generator=generator).to(device),)
    if task == "captioning":
        vocab = len(system.vocab)
        tokens = torch.randint(3, vocab, (4, 9), generator=generator)
        tokens[:, 0] = 1
        lengths = torch.tensor([9, 7, 5, 9])
        return torch.rand(4, 3, 96, 96, generator=generator).to(device), tokens.to(device), lengths.to(device)
    tokens = torch.randint(3, len(system.tokenizer), (2, 6), generator=generator)
    tokens[:, 0] = system.tokenizer.bos_id
    waveform = 0.1 * torch.randn(2, 16000, generator=generator)
    return (
        waveform.to(device),
        torch.tensor([16000, 12000]).to(device),
        tokens.to(device),
        torch.tensor([6, 4]).to(device),
    )


def _first_tensor(output) -> torch.Tensor:
    """The first tensor of a model's output (a tensor, a NamedTuple or a dataclass)."""
    if dataclasses.is_dataclass(output):
        output = [getattr(output, field.name) for field in dataclasses.fields(output)]
    if isinstance(output, torch.Tensor):
        return output
    return next(t for t in output if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("task", TASKS)
def test_torch_compile_matches_eager(trained, device, task: str) -> None:
    system = load_system(_system_class(task), trained[task]).to(device).eval()
    model = system.model
    inputs = _model_inputs(task, system, device)
    # On a CPU (a dry run of these tests) only dynamo's tracing runs: inductor's C++ build takes minutes.
    compiled = torch.compile(model, backend="inductor" if device.type == "cuda" else "eager")
    with torch.no_grad():
        eager = _first_tensor(model(*inputs)).float()
        got = _first_tensor(compiled(*inputs)).float()
    assert got.shape == eager.shape
    torch.testing.assert_close(got, eager, atol=2e-3, rtol=2e-3)
