"""``multiattn.load``: pipelines found through the checkpoint, inputs of every kind, results equal to
the app commands' records, options checked before inference, and docs/python.md executed."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import multiattn
from multiattn.checkpoint import load_checkpoint
from multiattn.io import UserError
from multiattn.pipeline import InputError, OptionError, check_number

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def samples(tiny_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """A digit, a scene and a speech file from the tiny test splits."""
    folder = tmp_path_factory.mktemp("samples")
    digits = np.load(tiny_checkpoints["stn"][1] / "RTS" / "test_images.npy")
    Image.fromarray(digits[0]).save(folder / "digit.png")
    Image.fromarray(digits[1]).save(folder / "digit2.png")
    scenes = np.load(tiny_checkpoints["captioning"][1] / "test_images.npy")
    Image.fromarray(scenes[0]).save(folder / "scene.png")
    Image.fromarray(scenes[1]).save(folder / "scene2.png")
    flac = sorted(tiny_checkpoints["asr"][1].rglob("test/*.flac"))
    data, rate = soundfile.read(flac[0], dtype="float32")
    soundfile.write(folder / "speech.flac", data, rate)
    data, rate = soundfile.read(flac[1], dtype="float32")
    soundfile.write(folder / "speech2.flac", data, rate)
    return {p.stem: p for p in folder.iterdir()}


def _app_record(task: str, ckpt: Path, file: Path, capsys, *extra: str) -> dict:
    from multiattn.cli import main as cli_main

    command = {"stn": "classify", "captioning": "caption", "asr": "transcribe"}[task]
    capsys.readouterr()
    assert cli_main([command, str(file), "--ckpt", str(ckpt), "--json", "--device", "cpu", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("task", "sample", "pipeline"),
    [
        ("stn", "digit", "ClassifierPipeline"),
        ("captioning", "scene", "CaptioningPipeline"),
        ("asr", "speech", "SpeechPipeline"),
    ],
)
def test_load_finds_the_task_and_records_equal_the_app_commands(
    tiny_checkpoints, samples, capsys, task, sample, pipeline
):
    ckpt = tiny_checkpoints[task][0]
    pipe = multiattn.load(ckpt, device="cpu")
    assert type(pipe).__name__ == pipeline
    record = pipe(str(samples[sample])).to_dict()
    assert record == _app_record(task, ckpt, samples[sample], capsys)
    json.dumps(record)  # plain types


def test_checkpoint_without_a_class_path_is_matched_by_its_hyperparameters(tiny_checkpoints, tmp_path):
    for task, name in (
        ("stn", "ClassifierPipeline"),
        ("captioning", "CaptioningPipeline"),
        ("asr", "SpeechPipeline"),
    ):
        checkpoint = load_checkpoint(tiny_checkpoints[task][0])
        assert checkpoint["hyper_parameters"].pop("_class_path", None)
        torch.save(checkpoint, tmp_path / f"{task}.ckpt")
        assert type(multiattn.load(tmp_path / f"{task}.ckpt", device="cpu")).__name__ == name
    checkpoint["hyper_parameters"]["_class_path"] = "somebody.else.Model"
    torch.save(checkpoint, tmp_path / "foreign.ckpt")
    with pytest.raises(UserError, match="somebody.else.Model"):
        multiattn.load(tmp_path / "foreign.ckpt")


def test_image_inputs_of_every_kind_give_the_same_result(tiny_checkpoints, samples):
    for task, sample, key in (("stn", "digit", "probabilities"), ("captioning", "scene", "caption")):
        pipe = multiattn.load(tiny_checkpoints[task][0], device="cpu")
        by_path = pipe(samples[sample]).to_dict()
        image = Image.open(samples[sample])
        array = np.asarray(image)
        tensor = torch.from_numpy(array.astype(np.float32) / 255.0)
        if tensor.dim() == 3:
            tensor = tensor.permute(2, 0, 1)  # (C, H, W)
        for other in (image, array, tensor):
            result = pipe(other).to_dict()
            assert result["file"] is None
            if key == "probabilities":
                assert result["label"] == by_path["label"]
                assert result[key] == pytest.approx(by_path[key], abs=1e-4)
            else:
                assert result[key] == by_path[key]


def test_batched_equals_one_at_a_time_and_order_is_kept(tiny_checkpoints, samples):
    for task, names in (
        ("stn", ["digit", "digit2"]),
        ("captioning", ["scene", "scene2"]),
        ("asr", ["speech", "speech2"]),
    ):
        pipe = multiattn.load(tiny_checkpoints[task][0], device="cpu")
        files = [samples[n] for n in names] * 2
        together = [r.to_dict() for r in pipe(files, batch_size=3)]
        alone = [pipe(f).to_dict() for f in files]
        assert [r["file"] for r in together] == [str(f) for f in files]
        for a, b in zip(together, alone):
            _assert_close(a, b, task)


def _assert_close(a, b, where) -> None:
    """Equal records, numbers to 1e-4 (a batch may round differently from one input alone)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], (where, key))
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for x, y in zip(a, b):
            _assert_close(x, y, where)
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-4), where
    else:
        assert a == b, where


def test_speech_inputs_of_every_kind_give_the_same_text(tiny_checkpoints, samples):
    pipe = multiattn.load(tiny_checkpoints["asr"][0], device="cpu", beam_size=1, mode="attention")
    samples_, rate = soundfile.read(samples["speech"], dtype="float32")
    by_path = pipe(samples["speech"]).to_dict()
    results = pipe([(samples_, rate), {"array": samples_, "sampling_rate": rate}, torch.from_numpy(samples_)])
    assert rate == 16000 and all(r.to_dict()["text"] == by_path["text"] for r in results)
    stereo = pipe((np.stack([samples_, samples_]), rate)).to_dict()  # (channels, N)
    assert stereo["text"] == by_path["text"]


def test_results_hold_the_attention_and_draw_the_overlay(tiny_checkpoints, samples):
    stn = multiattn.load(tiny_checkpoints["stn"][0], device="cpu")(samples["digit"])
    assert tuple(stn.attention["corners"].shape) == (4, 2)
    assert np.allclose(stn.attention["corners"].numpy(), stn.to_dict()["corners"], atol=1e-3)
    caption = multiattn.load(tiny_checkpoints["captioning"][0], device="cpu")(samples["scene"])
    assert caption.attention["maps"].shape[0] == len(caption.to_dict()["words"])
    assert torch.allclose(caption.attention["maps"].sum(dim=(1, 2)), torch.ones(1), atol=1e-4)
    speech = multiattn.load(tiny_checkpoints["asr"][0], device="cpu", beam_size=1)(samples["speech"])
    piece = speech.attention["pieces"][0]
    tokens, frames = len(piece["tokens"]), piece["times"].shape[0]
    assert piece["attention"].shape[1] == frames and piece["ctc"].shape == (tokens, frames)
    steps = (piece["times"][1:] - piece["times"][:-1]).numpy()
    assert np.allclose(steps, speech.attention["frame_seconds"])
    for result in (stn, caption, speech):
        figure = result.overlay()
        assert figure.axes, type(result).__name__


def test_a_bad_input_raises_in_a_call_and_is_one_item_in_run(tiny_checkpoints, samples, tmp_path):
    pipe = multiattn.load(tiny_checkpoints["captioning"][0], device="cpu")
    bad = tmp_path / "bad.png"
    bad.write_text("no image")
    with pytest.raises(UserError, match="bad.png"):
        pipe([samples["scene"], bad])
    items = list(pipe.run([bad, samples["scene"]]))
    assert (
        isinstance(items[0], InputError)
        and items[0].file == str(bad)
        and "not a readable image" in items[0].error
    )
    assert items[1].to_dict()["file"] == str(samples["scene"])


@pytest.mark.parametrize(
    ("task", "option", "value"),
    [
        ("captioning", "max_len", 0),
        ("captioning", "length_penalty", math.nan),
        ("captioning", "beam_size", 2.5),
        ("asr", "lm_weight", math.inf),
        ("asr", "ctc_weight", 1.5),
        ("asr", "max_seconds", math.nan),
        ("asr", "mode", "fast"),
        ("stn", "invert", "yes"),
    ],
)
def test_bad_options_are_refused_before_the_model_is_built(
    tiny_checkpoints, monkeypatch, task, option, value
):
    from multiattn import pipeline

    cls = pipeline.pipeline_class(load_checkpoint(tiny_checkpoints[task][0]), "x")
    monkeypatch.setattr(cls, "build_system", classmethod(lambda *a: pytest.fail("model built")))
    with pytest.raises(OptionError, match=option):
        multiattn.load(tiny_checkpoints[task][0], device="cpu", **{option: value})


def test_check_number_limits():
    assert check_number("x", 3, integer=True, low=1) == 3
    assert check_number("x", None, low=1) is None
    for bad in (math.nan, math.inf, -math.inf, 0.5, True, "1"):
        with pytest.raises(OptionError):
            check_number("x", bad, integer=True, low=1)
    with pytest.raises(OptionError):
        check_number("x", 0.0, low=0.0, low_open=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_so(tiny_checkpoints):
    with pytest.raises(UserError, match="CUDA is not available"):
        multiattn.load(tiny_checkpoints["stn"][0], device="cuda")


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_docs_python_examples_run(tiny_checkpoints, samples, tmp_path, monkeypatch):
    for task, config in (("stn", "stn_tiny"), ("captioning", "captioning_tiny"), ("asr", "asr_tiny")):
        target = tmp_path / "outputs" / config / "checkpoints"
        target.mkdir(parents=True)
        os.symlink(tiny_checkpoints[task][0], target / "last.ckpt")
    for name in ("digit", "scene", "speech"):
        os.symlink(samples[name], tmp_path / samples[name].name)
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks((ROOT / "docs" / "python.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python.md", "exec"), namespace)
    assert (tmp_path / "digit_region.png").is_file()
