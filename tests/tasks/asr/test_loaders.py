"""Real formats through SpeechDataset: LibriSpeech folders, NeMo manifests, bad files, normalisation."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile
import torch

from multiattn.io import UserError
from multiattn.tasks.asr.dataset import SpeechDataset, SpeechItem
from multiattn.tasks.asr.sources.librispeech import read_librispeech
from multiattn.tasks.asr.sources.manifest import AudioEntry, WordTiming, read_manifest, write_manifest
from multiattn.tasks.asr.sources.text import normalize_text


def _write_tone(path, seconds: float, sample_rate: int = 16000, channels: int = 1) -> None:
    rng = np.random.default_rng(len(str(path)))
    data = (0.2 * rng.standard_normal((int(seconds * sample_rate), channels))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data if channels > 1 else data[:, 0], sample_rate)


def test_normalize_text():
    assert normalize_text("HELLO, World!") == "hello world"
    assert normalize_text("It’s 3 o'clock -- café") == "it's three o'clock cafe"
    assert normalize_text("  'quoted'  dogs' well-known ") == "quoted dogs well known"
    assert normalize_text("123 !!") == "one hundred and twenty three"
    assert normalize_text("-- !!") == ""


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "LibriSpeech"
    chapter = root / "dev-clean" / "84" / "121123"
    _write_tone(chapter / "84-121123-0000.flac", 1.0)
    _write_tone(chapter / "84-121123-0001.flac", 0.5, sample_rate=22050)
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n84-121123-0002 NO AUDIO FOR THIS\n"
    )
    other = root / "dev-clean" / "174" / "50561"
    _write_tone(other / "174-50561-0000.flac", 0.75, channels=2)
    (other / "174-50561.trans.txt").write_text("174-50561-0000 FORGOTTEN TOO THE NAME OF GILLIAN'S LOVER\n")
    return root


def test_librispeech_layout_loads(librispeech):
    dataset = SpeechDataset.from_librispeech(librispeech, "dev-clean")
    assert len(dataset) == 3
    items = [dataset[i] for i in range(len(dataset))]
    assert [item.text for item in items] == [
        "forgotten too the name of gillian's lover",
        "go do you hear",
        "but in less than five minutes",
    ]
    assert all(isinstance(item, SpeechItem) and item.words is None for item in items)
    assert [item.waveform.numel() for item in items] == [12000, 16000, 8000]  # resampled to 16 kHz
    assert dataset.durations == pytest.approx([0.75, 1.0, 0.5])
    assert items[1].path.endswith("84-121123-0000.flac")


def test_librispeech_missing_folder_is_a_user_error(tmp_path, librispeech):
    with pytest.raises(UserError, match="not found"):
        read_librispeech(librispeech, "test-other")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="trans.txt"):
        read_librispeech(tmp_path / "plain")


def test_nemo_manifest_relative_absolute_offset(tmp_path):
    audio = tmp_path / "audio"
    _write_tone(audio / "a.wav", 1.0, sample_rate=8000)
    _write_tone(audio / "long.flac", 3.0)
    lines = [
        {"audio_filepath": "audio/a.wav", "duration": 1.0, "text": "Hello World"},
        {"audio_filepath": str(audio / "long.flac"), "duration": 1.5, "offset": 1.0, "text": "second part"},
        {
            "audio_filepath": "audio/a.wav",
            "duration": 1.0,
            "text": "with words",
            "words": [
                {"word": "with", "start": 0.1, "end": 0.4},
                {"word": "words", "start": 0.4, "end": 0.9},
            ],
        },
    ]
    manifest = tmp_path / "train.json"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")

    dataset = SpeechDataset.from_manifest(manifest)
    assert [dataset[i].text for i in range(3)] == ["hello world", "second part", "with words"]
    assert dataset[0].waveform.numel() == 16000
    long = soundfile.read(str(audio / "long.flac"), dtype="float32")[0]
    assert torch.allclose(dataset[1].waveform, torch.from_numpy(long[16000:40000]), atol=1e-6)
    assert dataset[2].words == [WordTiming("with", 0.1, 0.4), WordTiming("words", 0.4, 0.9)]


def test_manifest_round_trip(tmp_path):
    _write_tone(tmp_path / "clips" / "x.flac", 0.5)
    entries = [
        AudioEntry(
            tmp_path / "clips" / "x.flac", "a b", 0.5, [WordTiming("a", 0.0, 0.2)], meta={"voice": "v"}
        )
    ]
    write_manifest(tmp_path / "m.jsonl", entries, relative=True)
    record = json.loads((tmp_path / "m.jsonl").read_text())
    assert record["audio_filepath"] == "clips/x.flac" and record["voice"] == "v"
    back = read_manifest(tmp_path / "m.jsonl")[0]
    assert (
        back.path == tmp_path / "clips" / "x.flac"
        and back.words == entries[0].words
        and back.meta == {"voice": "v"}
    )


def test_manifest_errors_name_file_and_line(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav", "text": "ok"}\nnot json\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2"):
        read_manifest(manifest)
    manifest.write_text('{"audio_filepath": "a.wav"}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:1: .*'text'"):
        read_manifest(manifest)
    with pytest.raises(UserError, match="manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")


def test_bad_files_skipped_and_counted(tmp_path, caplog):
    _write_tone(tmp_path / "good.wav", 1.0)
    _write_tone(tmp_path / "long.wav", 4.0)
    (tmp_path / "text.wav").write_text("not audio at all\n" * 10)
    soundfile.write(str(tmp_path / "empty.wav"), np.zeros(0, dtype=np.float32), 16000)
    entries = [
        AudioEntry(tmp_path / "good.wav", "good"),
        AudioEntry(tmp_path / "text.wav", "text"),
        AudioEntry(tmp_path / "missing.wav", "missing"),
        AudioEntry(tmp_path / "empty.wav", "empty"),
        AudioEntry(tmp_path / "long.wav", "long"),
    ]
    with caplog.at_level(logging.WARNING):
        dataset = SpeechDataset(entries, max_duration=2.0)
    assert [e.text for e in dataset.entries] == ["good"]
    assert dataset.num_skipped == 3 and dataset.num_filtered == 1
    assert "missing.wav" in caplog.text and "text.wav" in caplog.text


def test_file_broken_after_construction_is_replaced_not_fatal(tmp_path):
    for name in ("a", "b", "c"):
        _write_tone(tmp_path / f"{name}.wav", 0.5)
    dataset = SpeechDataset([AudioEntry(tmp_path / f"{n}.wav", n) for n in "abc"])
    soundfile.write(str(tmp_path / "b.wav"), np.zeros(8000, dtype=np.float32), 16000)  # now silent
    texts = [dataset[i].text for i in range(len(dataset))]
    assert texts == ["a", "c", "c"]
    assert dataset.num_load_failures == 1
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=list)
    assert len(next(iter(loader))) == 3


def test_all_bad_is_a_user_error(tmp_path):
    (tmp_path / "x.wav").write_text("nope")
    with pytest.raises(UserError, match="no usable utterance"):
        SpeechDataset([AudioEntry(tmp_path / "x.wav", "x")])
