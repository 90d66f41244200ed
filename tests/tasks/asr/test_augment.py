"""Waveform augmentation: deterministic by (seed, epoch, index), each effect does what it says."""

from __future__ import annotations

import math

import pytest
import torch

from multiattn.tasks.asr.augment import (
    EVAL_CONDITIONS,
    AugmentConfig,
    Augmenter,
    codec_round_trip,
    coloured_noise,
    item_generator,
    pitch_shift,
    telephone,
)
from multiattn.tasks.asr.data import BucketBatchSampler
from multiattn.tasks.asr.dataset import AugmentedSpeechDataset, SpeechDataset
from multiattn.tasks.asr.sources.manifest import AudioEntry, WordTiming

SR = 16000
EVERYTHING = AugmentConfig(
    speed_prob=0.5, pitch_prob=0.5, reverb_prob=0.5, noise_prob=0.7, telephone_prob=0.3, codec_prob=0.3
)


def _voice(seconds: float = 1.0, f0: float = 180.0) -> torch.Tensor:
    """A vowel-like harmonic tone with a 4 Hz amplitude wobble."""
    t = torch.arange(int(seconds * SR)) / SR
    tone = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 12))
    return 0.3 * tone / tone.abs().max() * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * t))


def _dominant_frequency(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave * torch.hann_window(len(wave))).abs()
    return float(torch.fft.rfftfreq(len(wave), 1 / SR)[spectrum.argmax()])


def test_same_key_same_output_other_key_other_output():
    wave = _voice()
    babble = lambda generator, count: [_voice(0.7, 120.0 + 10 * i) for i in range(count)]  # noqa: E731
    augmenter = Augmenter(EVERYTHING, babble)
    outputs = {}
    for key in [(0, 0, i) for i in range(12)] + [(0, 1, 0), (1, 0, 0)]:
        first, scale = augmenter(wave, item_generator(*key))
        again, scale_again = Augmenter(EVERYTHING, babble)(wave, item_generator(*key))
        assert torch.equal(first, again) and scale == scale_again, key
        outputs[key] = first
    distinct = {tuple(out[:2000].tolist()) for out in outputs.values()}
    assert len(distinct) == len(outputs)  # epochs, indices and seeds all change the draws


def test_noise_conditions_hit_their_snr():
    wave = _voice()
    for name, snr in (("noise_10db", 10.0), ("noise_5db", 5.0), ("babble_10db", 10.0)):
        augmenter = Augmenter(EVAL_CONDITIONS[name], lambda g, n: [_voice(0.5, 250.0)] * n)
        for index in range(4):
            noisy, scale = augmenter(wave, item_generator(0, 0, index))
            noise = noisy - wave
            measured = 10 * math.log10(float(wave.pow(2).sum() / noise.pow(2).sum()))
            assert scale == 1.0 and abs(measured - snr) < 0.05, (name, index, measured)


def test_coloured_noise_slopes():
    generator = torch.Generator().manual_seed(0)
    low_share = {}
    for name, alpha in (("white", 0.0), ("pink", 1.0), ("brown", 2.0), ("blue", -1.0)):
        power = torch.fft.rfft(coloured_noise(SR * 2, alpha, generator)).abs().pow(2)
        low_share[name] = float(power[: len(power) // 8].sum() / power.sum())  # below 1 kHz
    assert low_share["blue"] < low_share["white"] < low_share["pink"] < low_share["brown"]
    assert abs(low_share["white"] - 0.125) < 0.02


def test_speed_pitch_telephone_and_codecs():
    wave = _voice(1.0, 200.0)
    for factor in (0.9, 1.1):
        fast, scale = Augmenter(AugmentConfig(speed_prob=1.0, speeds=(factor,)))(
            wave, item_generator(0, 0, 0)
        )
        assert abs(len(fast) - len(wave) / factor) <= 2 and scale == pytest.approx(1 / factor)
        assert _dominant_frequency(fast) == pytest.approx(200.0 * factor, rel=0.03)
    higher = pitch_shift(wave, 9, 8)  # two semitones up, duration kept
    assert len(higher) == len(wave)
    assert _dominant_frequency(higher[1000:-1000]) == pytest.approx(225.0, rel=0.03)
    noise = coloured_noise(SR, 0.0, torch.Generator().manual_seed(1)) * 0.1
    narrow = torch.fft.rfft(telephone(noise)).abs().pow(2)
    band = torch.fft.rfftfreq(SR, 1 / SR)
    assert len(telephone(noise)) == SR
    assert float(narrow[band > 4200].sum() / narrow.sum()) < 0.01  # nothing above the 8 kHz band
    for codec in ("mp3", "opus", "vorbis"):
        decoded = codec_round_trip(wave, codec)
        assert len(decoded) == len(wave)
        assert not torch.equal(decoded, wave)
        assert float((decoded - wave).pow(2).mean() / wave.pow(2).mean()) < 0.5, (
            codec
        )  # lossy, still the sound


def test_reverberation_spreads_energy_in_time():
    click = torch.zeros(SR)
    click[100] = 0.9
    wet, _ = Augmenter(AugmentConfig(reverb_prob=1.0, rt60_range=(0.5, 0.5)))(click, item_generator(0, 0, 0))
    late = float(wet[100 + SR // 20 :].pow(2).sum() / wet.pow(2).sum())  # energy after 50 ms
    assert 0.01 < late < 0.9  # direct-to-reverberant ratio -3..9 dB, RT60 0.5 s


def test_bad_config_values_are_named():
    for bad, key in (
        (AugmentConfig(noise_prob=1.5), "noise_prob"),
        (AugmentConfig(speeds=(0.93,)), "speeds"),
        (AugmentConfig(rt60_range=(0.9, 0.2)), "rt60_range"),
        (AugmentConfig(codecs=("flac",)), "codecs"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match=key):
            bad.check()
    assert not AugmentConfig().enabled and EVERYTHING.enabled


def test_augmented_dataset_keys_and_word_times(tmp_path):
    import soundfile

    entries = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(str(path), _voice(0.5 + 0.1 * i).numpy(), SR)
        entries.append(
            AudioEntry(path=path, text="a b", words=[WordTiming("a", 0.1, 0.2), WordTiming("b", 0.3, 0.4)])
        )
    clean = SpeechDataset(entries)
    data = AugmentedSpeechDataset(clean, AugmentConfig(speed_prob=1.0, speeds=(1.1,), noise_prob=0.5), seed=3)
    item = data[(2, 1)]
    assert torch.equal(item.waveform, data[(2, 1)].waveform)
    assert not torch.equal(item.waveform, data[(3, 1)].waveform)
    assert torch.equal(data[1].waveform, data[(0, 1)].waveform)
    assert [w.start for w in item.words] == [
        pytest.approx(0.1 / 1.1, abs=1e-4),
        pytest.approx(0.3 / 1.1, abs=1e-4),
    ]
    sampler = BucketBatchSampler(data.durations, batch_size=2, shuffle=True, seed=0, with_epoch=True)
    sampler.set_epoch(5)
    keys = [key for batch in sampler for key in batch]
    assert sorted(keys) == [(5, 0), (5, 1), (5, 2)]
