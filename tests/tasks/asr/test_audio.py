"""Audio loading (any format / rate / channels -> 16 kHz mono), bad-file errors, segmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from multiattn.io import UserError
from multiattn.tasks.asr.audio import SAMPLE_RATE, load_audio, segment_audio


def _tone(sample_rate: int, seconds: float, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_frequency(wave: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return float(torch.argmax(spectrum)) * sample_rate / wave.numel()


@pytest.mark.parametrize(
    ("suffix", "sample_rate", "subtype", "channels"),
    [
        ("wav", 8000, "PCM_16", 1),
        ("wav", 44100, "FLOAT", 2),
        ("wav", 16000, "PCM_16", 1),
        ("flac", 44100, "PCM_24", 2),
        ("flac", 8000, "PCM_16", 1),
        ("ogg", 44100, "VORBIS", 2),
        ("ogg", 8000, "VORBIS", 1),
    ],
)
def test_load_audio_resamples_to_16k_mono(tmp_path, suffix, sample_rate, subtype, channels):
    seconds = 1.0
    tone = _tone(sample_rate, seconds)
    data = tone if channels == 1 else np.stack([tone, 0.5 * tone], axis=1)  # (N, 2); mean = 0.75 tone
    path = tmp_path / f"tone_{sample_rate}.{suffix}"
    soundfile.write(str(path), data, sample_rate, subtype=subtype)

    wave = load_audio(path)

    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert abs(wave.numel() - seconds * SAMPLE_RATE) <= 2
    assert _dominant_frequency(wave, SAMPLE_RATE) == pytest.approx(440.0, abs=2.0)
    expected_peak = 0.5 if channels == 1 else 0.375
    tolerance = 0.05 if suffix == "ogg" else 0.01  # vorbis is lossy
    assert float(wave.abs().max()) == pytest.approx(expected_peak, abs=tolerance)


def test_load_audio_int16_scaled_to_unit_range(tmp_path):
    path = tmp_path / "int.wav"
    soundfile.write(str(path), (np.array([0, 16384, -32768, 8192] * 400, dtype=np.int16)), 16000)
    wave = load_audio(path)
    assert float(wave.min()) == pytest.approx(-1.0)
    assert float(wave.max()) == pytest.approx(0.5, abs=1e-4)


def test_load_audio_offset_and_duration(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(str(path), _tone(16000, 3.0), 16000)
    assert load_audio(path, offset=1.0, duration=1.5).numel() == 24000
    assert load_audio(path, offset=2.0).numel() == 16000


def _one_line_error(path, match):
    with pytest.raises(UserError) as info:
        load_audio(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert match in message
    return message


def test_missing_file_error(tmp_path):
    _one_line_error(tmp_path / "nope.wav", "not found")


def test_empty_file_error(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(str(path), np.zeros(0, dtype=np.float32), 16000)
    _one_line_error(path, "empty")


def test_silent_file_error(tmp_path):
    path = tmp_path / "silent.flac"
    soundfile.write(str(path), np.zeros(16000, dtype=np.float32), 16000)
    _one_line_error(path, "silent")


def test_text_file_renamed_wav_error(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n" * 20)
    _one_line_error(path, "not a readable audio file")


def test_zero_byte_file_error(tmp_path):
    path = tmp_path / "zero.ogg"
    path.write_bytes(b"")
    _one_line_error(path, "not a readable audio file")


def _speech_like(seconds: float, sample_rate: int, gaps: list[float]) -> torch.Tensor:
    """Noise bursts with 0.3 s silences starting at ``gaps`` (seconds)."""
    generator = torch.Generator().manual_seed(0)
    wave = 0.3 * torch.randn(int(seconds * sample_rate), generator=generator)
    for gap in gaps:
        wave[int(gap * sample_rate) : int((gap + 0.3) * sample_rate)] = 0.0
    return wave


@pytest.mark.parametrize("overlap", [0.0, 1.0])
def test_segments_cover_the_whole_signal(overlap):
    sample_rate = 16000
    wave = _speech_like(65.0, sample_rate, gaps=[8.5, 17.0, 26.0, 35.0, 44.0, 53.0])
    segments = segment_audio(wave, sample_rate, max_seconds=10.0, overlap_seconds=overlap)

    assert len(segments) >= math.ceil(65.0 / 10.0)
    covered = torch.zeros(wave.numel(), dtype=torch.bool)
    previous_end = 0
    for start, chunk in segments:
        assert chunk.numel() <= 10.0 * sample_rate
        assert start <= previous_end  # no hole between chunks
        assert torch.equal(chunk, wave[start : start + chunk.numel()])
        covered[start : start + chunk.numel()] = True
        previous_end = start + chunk.numel()
    assert previous_end == wave.numel()
    assert bool(covered.all())


def test_segments_cut_in_silences():
    sample_rate = 16000
    gaps = [8.5, 17.5, 26.0]
    wave = _speech_like(30.0, sample_rate, gaps=gaps)
    segments = segment_audio(wave, sample_rate, max_seconds=10.0)
    cuts = [start / sample_rate for start, _ in segments[1:]]
    assert len(cuts) == len(gaps)
    for cut, gap in zip(cuts, gaps):
        assert gap <= cut <= gap + 0.3


def test_short_signal_is_one_segment():
    wave = torch.randn(16000)
    segments = segment_audio(wave, 16000, max_seconds=10.0)
    assert len(segments) == 1 and segments[0][0] == 0 and torch.equal(segments[0][1], wave)


def test_segment_rejects_bad_arguments():
    with pytest.raises(ValueError, match="overlap"):
        segment_audio(torch.randn(1000), 16000, max_seconds=1.0, overlap_seconds=0.6)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        segment_audio(torch.randn(2, 1000), 16000, max_seconds=1.0)
