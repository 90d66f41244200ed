"""The app commands over the tiny checkpoints: one overlay per input, outputs checked before
inference, every numeric flag checked, empty folders, short / truncated audio, subtitle files
that parse, progress only on a terminal."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import srt
import torch
import webvtt
from PIL import Image

from multiattn.cli import main as cli_main
from multiattn.tasks.asr.subtitles import vtt_time

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
COMMAND = {"stn": "classify", "captioning": "caption", "asr": "transcribe"}


@pytest.fixture(scope="module")
def inputs(tiny_checkpoints, tmp_path_factory) -> dict[str, list[Path]]:
    """Per task, two inputs with the same stem in different folders (or of different formats)."""
    folder = tmp_path_factory.mktemp("inputs")
    out: dict[str, list[Path]] = {}
    digits = np.load(tiny_checkpoints["stn"][1] / "RTS" / "test_images.npy")
    scenes = np.load(tiny_checkpoints["captioning"][1] / "test_images.npy")
    for task, images in (("stn", digits), ("captioning", scenes)):
        paths = []
        for index, sub in enumerate(("a", "b")):
            (folder / task / sub).mkdir(parents=True)
            Image.fromarray(images[index]).save(folder / task / sub / "x.png")
            paths.append(folder / task / sub / "x.png")
        out[task] = paths
    flac = sorted(tiny_checkpoints["asr"][1].rglob("test/*.flac"))[0]
    data, rate = soundfile.read(flac, dtype="float32")
    (folder / "asr").mkdir()
    soundfile.write(folder / "asr" / "speech.flac", data, rate)
    soundfile.write(folder / "asr" / "speech.ogg", data, rate)
    soundfile.write(folder / "asr" / "speech.wav", data, rate, subtype="PCM_16")
    out["asr"] = [folder / "asr" / "speech.flac", folder / "asr" / "speech.ogg"]
    out["asr_wav"] = [folder / "asr" / "speech.wav"]
    return out


def _run(task: str, ckpt: Path, *argv: str) -> int:
    return cli_main([COMMAND[task], *argv, "--ckpt", str(ckpt), "--device", "cpu"])


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


@pytest.mark.parametrize("task", ["stn", "captioning", "asr"])
def test_every_input_gets_its_own_overlay_named_in_its_record(
    tiny_checkpoints, inputs, tmp_path, capsys, task
):
    files = inputs[task]
    assert files[0].stem == files[1].stem
    code = _run(
        task, tiny_checkpoints[task][0], *map(str, files), "--json", "--overlay-dir", str(tmp_path / "ov")
    )
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    overlays = [r["overlay"] for r in records]
    assert len(set(overlays)) == 2 and all(Path(o).is_file() for o in overlays)
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == sorted(Path(o).name for o in overlays)
    # a second run refuses to replace them, before running the model; --overwrite replaces them
    before = [Path(o).stat().st_mtime_ns for o in overlays]
    assert _run(task, tiny_checkpoints[task][0], *map(str, files), "--overlay-dir", str(tmp_path / "ov")) == 2
    _one_error_line(capsys, "exists", "--overwrite")
    assert [Path(o).stat().st_mtime_ns for o in overlays] == before
    assert (
        _run(
            task,
            tiny_checkpoints[task][0],
            str(files[0]),
            "--overlay-dir",
            str(tmp_path / "ov"),
            "--overwrite",
        )
        == 0
    )


@pytest.mark.parametrize("task", ["stn", "captioning", "asr"])
def test_overlay_dir_that_is_a_file_or_unwritable_is_one_line_before_inference(
    tiny_checkpoints, inputs, tmp_path, capsys, monkeypatch, task
):
    from multiattn import pipeline

    monkeypatch.setattr(pipeline.Pipeline, "run", lambda *a, **k: pytest.fail("inference ran"))
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    assert _run(task, tiny_checkpoints[task][0], str(inputs[task][0]), "--overlay-dir", str(a_file)) == 2
    _one_error_line(capsys, "--overlay-dir", "not a folder")
    assert a_file.read_text() == "mine"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert (
                _run(task, tiny_checkpoints[task][0], str(inputs[task][0]), "--overlay-dir", str(locked)) == 2
            )
            _one_error_line(capsys, "--overlay-dir", "not writable")
        finally:
            locked.chmod(0o700)


@pytest.mark.parametrize(
    ("task", "flags", "needle"),
    [
        ("asr", ["--max-seconds", "nan"], "--max-seconds nan"),
        ("asr", ["--max-seconds", "inf"], "--max-seconds inf"),
        ("asr", ["--lm-weight", "nan"], "--lm-weight nan"),
        ("asr", ["--lm-weight", "inf"], "--lm-weight inf"),
        ("asr", ["--ctc-weight", "nan"], "--ctc-weight nan"),
        ("asr", ["--beam-size", "0"], "--beam-size 0"),
        ("captioning", ["--max-len", "0"], "--max-len 0"),
        ("captioning", ["--length-penalty", "nan"], "--length-penalty nan"),
        ("captioning", ["--length-penalty", "-1"], "--length-penalty -1"),
        ("captioning", ["--beam-size", "0"], "--beam-size 0"),
        ("stn", ["--batch-size", "0"], "--batch-size 0"),
        ("asr", ["--output-dir", "subs"], "--output-format"),
    ],
)
def test_bad_numbers_are_one_line_exit_2_before_inference(
    tiny_checkpoints, inputs, capsys, monkeypatch, task, flags, needle
):
    from multiattn import pipeline

    monkeypatch.setattr(pipeline.Pipeline, "run", lambda *a, **k: pytest.fail("inference ran"))
    assert _run(task, tiny_checkpoints[task][0], str(inputs[task][0]), *flags) == 2
    _one_error_line(capsys, needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("task", ["stn", "captioning", "asr"])
def test_cuda_on_a_machine_without_it_says_so(tiny_checkpoints, inputs, capsys, task):
    assert (
        cli_main(
            [
                COMMAND[task],
                str(inputs[task][0]),
                "--ckpt",
                str(tiny_checkpoints[task][0]),
                "--device",
                "cuda",
            ],
        )
        == 2
    )
    line = _one_error_line(capsys, "--device cuda", "CUDA is not available")
    assert "corrupt" not in line


def test_a_folder_without_recognised_files_is_an_error(tiny_checkpoints, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no audio here")
    assert _run("asr", tiny_checkpoints["asr"][0], str(tmp_path)) == 2
    _one_error_line(capsys, str(tmp_path), "no files")


def test_folder_search_finds_every_format_the_reader_decodes(tiny_checkpoints, inputs, tmp_path, capsys):
    data, rate = soundfile.read(inputs["asr"][0], dtype="float32")
    soundfile.write(tmp_path / "a.mp3", data, rate, format="MP3")
    soundfile.write(
        tmp_path / "b.opus", soundfile.read(inputs["asr"][0])[0], 48000, format="OGG", subtype="OPUS"
    )
    assert _run("asr", tiny_checkpoints["asr"][0], str(tmp_path), "--json", "--beam-size", "1") == 0
    files = [json.loads(line)["file"] for line in capsys.readouterr().out.splitlines()]
    assert [Path(f).name for f in files] == ["a.mp3", "b.opus"]


def test_truncated_wav_warns_and_too_short_clip_is_refused(tiny_checkpoints, inputs, tmp_path, capsys):
    whole = inputs["asr_wav"][0].read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) * 2 // 3])
    data, rate = soundfile.read(inputs["asr"][0], dtype="float32")
    soundfile.write(tmp_path / "blip.wav", data[: int(0.05 * rate)], rate)
    code = _run(
        "asr",
        tiny_checkpoints["asr"][0],
        str(tmp_path / "cut.wav"),
        str(tmp_path / "blip.wav"),
        "--beam-size",
        "1",
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.startswith(str(tmp_path / "cut.wav"))
    err = captured.err.strip().splitlines()
    assert len(err) == 2
    assert "cut.wav: warning: truncated WAV" in err[0]
    assert "blip.wav: too short" in err[1]


def test_caption_image_errors_say_what_is_wrong(tiny_checkpoints, inputs, tmp_path, capsys):
    (tmp_path / "text.png").write_text("not an image")
    cut = tmp_path / "cut.png"
    cut.write_bytes(inputs["captioning"][0].read_bytes()[:200])
    assert _run("captioning", tiny_checkpoints["captioning"][0], str(tmp_path / "text.png"), str(cut)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    for line, name in zip(err, ("text.png", "cut.png")):  # the reason, not the exception's class
        assert f"{name}: not a readable image (" in line and not line.endswith("Error)"), line


def test_transcribe_writes_subtitles_that_parse(tiny_checkpoints, inputs, tmp_path, capsys):
    out = tmp_path / "subs"
    files = [*inputs["asr"], *inputs["asr_wav"]]
    code = _run(
        "asr",
        tiny_checkpoints["asr"][0],
        *map(str, files),
        "--json",
        "--output-format",
        "all",
        "--output-dir",
        str(out),
        "--beam-size",
        "1",
    )
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    stems = ["speech", "speech_2", "speech_3"]  # same stem, three files
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{f}" for s in stems for f in ("txt", "json", "srt", "vtt", "tsv")
    )
    for stem, record in zip(stems, records):
        cues = list(srt.parse((out / f"{stem}.srt").read_text(encoding="utf-8")))
        vtt = webvtt.read(str(out / f"{stem}.vtt"))
        segments = [s for s in record["segments"] if s["text"]]
        assert len(cues) == len(vtt.captions) == len(segments) >= 1
        for cue, caption, segment in zip(cues, vtt.captions, segments):
            assert cue.content == caption.text == segment["text"]
            assert cue.start.total_seconds() == pytest.approx(segment["start"], abs=1e-3)
            assert caption.end == vtt_time(segment["end"]) and caption.start == vtt_time(segment["start"])
        assert json.loads((out / f"{stem}.json").read_text()) == record
        rows = (out / f"{stem}.tsv").read_text().splitlines()
        assert rows[0] == "start\tend\ttext" and len(rows) == 1 + len(segments)
        assert (out / f"{stem}.txt").read_text().splitlines() == [s["text"] for s in segments]
        for word in record["words"]:
            assert set(word) == {"word", "start", "end", "probability"} and 0.0 <= word["probability"] <= 1.0


def test_segments_split_at_pauses_and_length():
    from multiattn.tasks.asr.subtitles import build_segments, render

    def word(text, start, end):
        return {"word": text, "start": start, "end": end, "probability": 0.9}

    words = [word("one", 0.0, 0.3), word("two", 0.35, 0.6), word("three", 1.5, 1.9)]  # a 0.9 s pause
    segments = build_segments(words, pause=0.6)
    assert [s["text"] for s in segments] == ["one two", "three"]
    assert segments[1]["start"] == 1.5 and segments[0]["end"] == 0.6
    long = [word(f"w{i:02d}", i * 0.3, i * 0.3 + 0.25) for i in range(20)]
    chunks = build_segments(long, max_chars=12, max_seconds=100)
    assert all(len(s["text"]) <= 12 for s in chunks) and sum(len(s["words"]) for s in chunks) == 20
    timed = build_segments(long, max_chars=1000, max_seconds=2.0)
    assert all(s["end"] - s["start"] <= 2.0 for s in timed)
    parsed = list(srt.parse(render({"segments": segments}, "srt")))
    assert [c.content for c in parsed] == ["one two", "three"]
    hour = render({"segments": [{"start": 3725.5, "end": 3726.25, "text": "late", "words": []}]}, "srt")
    assert "01:02:05,500 --> 01:02:06,250" in hour


def test_progress_only_on_a_terminal_and_not_with_quiet(monkeypatch):
    from multiattn import apps

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, quiet, shown in (
        (Terminal(), False, True),
        (Terminal(), True, False),
        (io.StringIO(), False, False),
    ):
        monkeypatch.setattr("sys.stderr", stream)
        assert list(apps.progress(range(3), 3, quiet=quiet, desc="caption")) == [0, 1, 2]
        assert ("file/s" in stream.getvalue()) == shown, (quiet, shown)


def test_missing_checkpoint_is_still_one_line(inputs, tmp_path, capsys):
    assert cli_main(["caption", str(inputs["captioning"][0]), "--ckpt", str(tmp_path / "no.ckpt")]) == 2
    _one_error_line(capsys, "no.ckpt")
    shutil.rmtree(tmp_path, ignore_errors=True)
