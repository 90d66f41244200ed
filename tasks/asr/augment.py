"""Waveform augmentation for speech training and the degraded evaluation conditions.

Each training utterance passes, in this order, through: speed perturbation (tempo and pitch
together, Ko et al. 2015), pitch perturbation (pitch alone), simulated room reverberation,
additive noise at an SNR drawn from ``snr_range`` (generated coloured noise — white, pink, brown,
blue — or babble: a few other utterances of the same dataset mixed together), telephone
band-limiting (8 kHz, 300–3,400 Hz, mu-law), and a lossy codec round trip (MP3, Opus or Vorbis
through ``soundfile``). Each effect fires with its own probability; every random draw comes from a
generator seeded by ``(seed, epoch, index)``, so an utterance's augmentation is reproducible and
does not depend on the batch order or the number of workers (``DEVELOPERS.md``).

torchaudio does the signal processing (``speed``, ``resample``, ``phase_vocoder``,
``fftconvolve``, ``add_noise``, the biquads, mu-law); written here are only what it lacks:

* the room impulse response: exponentially decaying noise with a chosen RT60 after a direct path
  (the statistical reverberation model; torchaudio's image-source simulator lived in its
  ``prototype`` package, which torchaudio 2.9 removed);
* coloured noise: white noise shaped by ``f^(-alpha/2)`` in the frequency domain;
* pitch shift by a small rational ratio: ``torchaudio.functional.pitch_shift`` resamples between
  ``sample_rate / ratio`` and ``sample_rate``, whose greatest common divisor is usually 1, so its
  resampling kernel has thousands of phases (50 s for 3 s of audio here); the same phase-vocoder
  stretch followed by a resampling between two small integers costs milliseconds.

:data:`EVAL_CONDITIONS` are fixed degradations of a test split (``ASRDataModule.test_condition``):
``noise_10db``, ``noise_5db``, ``babble_10db``, ``reverb``, ``telephone``, ``codec``.

Shapes: ``N`` samples at 16 kHz.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["AugmentConfig", "EVAL_CONDITIONS", "Augmenter", "item_generator"]

SAMPLE_RATE = 16000
_NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}
# pitch ratios close to 1, 2 semitones up and down, as small fractions (fast resampling)
_PITCH_RATIOS = ((18, 17), (9, 8), (17, 18), (8, 9))
_CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "vorbis": ("OGG", "VORBIS")}


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time waveform augmentation (all probabilities 0: off, the default).

    Attributes:
        speed_prob: chance of a speed perturbation (tempo and pitch) by a factor of ``speeds``.
        speeds: speed factors to draw from (each a multiple of 0.05, so resampling stays fast).
        pitch_prob: chance of a pitch shift of about ±1 or ±2 semitones, duration kept.
        reverb_prob: chance of convolving with a simulated room impulse response.
        rt60_range: reverberation time range in seconds (time for the tail to fall by 60 dB).
        noise_prob: chance of adding noise.
        snr_range: signal-to-noise ratio range of that noise, dB.
        babble_share: share of the noise draws that are babble (2–5 other utterances) instead
            of generated coloured noise (white, pink, brown, blue).
        telephone_prob: chance of telephone band-limiting (8 kHz, 300–3,400 Hz, mu-law).
        codec_prob: chance of a lossy codec round trip.
        codecs: codecs to draw from (``mp3``, ``opus``, ``vorbis``).
    """

    speed_prob: float = 0.0
    speeds: tuple[float, ...] = (0.9, 0.95, 1.05, 1.1)
    pitch_prob: float = 0.0
    reverb_prob: float = 0.0
    rt60_range: tuple[float, float] = (0.2, 0.8)
    noise_prob: float = 0.0
    snr_range: tuple[float, float] = (5.0, 30.0)
    babble_share: float = 0.25
    telephone_prob: float = 0.0
    codec_prob: float = 0.0
    codecs: tuple[Literal["mp3", "opus", "vorbis"], ...] = ("mp3", "opus", "vorbis")

    @property
    def enabled(self) -> bool:
        """Whether any effect can fire."""
        probabilities = (self.speed_prob, self.pitch_prob, self.reverb_prob, self.noise_prob)
        return any(p > 0 for p in (*probabilities, self.telephone_prob, self.codec_prob))

    def check(self) -> AugmentConfig:
        """``self``, after checking ranges (``ValueError`` naming the key)."""
        for name in ("speed_prob", "pitch_prob", "reverb_prob", "noise_prob", "telephone_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"augment.{name}: expected a probability in [0, 1], received {getattr(self, name)}"
                )
        if not 0.0 <= self.codec_prob <= 1.0 or not 0.0 <= self.babble_share <= 1.0:
            raise ValueError("augment.codec_prob and augment.babble_share: expected values in [0, 1]")
        if any(not 0.5 <= s <= 2.0 or abs(round(s * 20) - s * 20) > 1e-6 for s in self.speeds):
            raise ValueError(
                f"augment.speeds: expected multiples of 0.05 in [0.5, 2], received {self.speeds}"
            )
        low, high = self.rt60_range
        if not 0.05 <= low <= high <= 3.0:
            raise ValueError(
                f"augment.rt60_range: expected 0.05 <= low <= high <= 3, received {self.rt60_range}"
            )
        if self.snr_range[0] > self.snr_range[1]:
            raise ValueError(f"augment.snr_range: expected low <= high, received {self.snr_range}")
        unknown = set(self.codecs) - set(_CODECS)
        if unknown or not self.codecs:
            raise ValueError(f"augment.codecs: expected some of {sorted(_CODECS)}, received {self.codecs}")
        return self


EVAL_CONDITIONS: dict[str, AugmentConfig] = {
    "noise_10db": AugmentConfig(noise_prob=1.0, snr_range=(10.0, 10.0), babble_share=0.25),
    "noise_5db": AugmentConfig(noise_prob=1.0, snr_range=(5.0, 5.0), babble_share=0.25),
    "babble_10db": AugmentConfig(noise_prob=1.0, snr_range=(10.0, 10.0), babble_share=1.0),
    "reverb": AugmentConfig(reverb_prob=1.0, rt60_range=(0.3, 0.8)),
    "telephone": AugmentConfig(telephone_prob=1.0),
    "codec": AugmentConfig(codec_prob=1.0),
}
"""Fixed degradations of an evaluation split (every utterance gets the effect)."""


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one utterance's draws: a function of ``(seed, epoch, index)`` only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + index)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _choice(generator: torch.Generator, options: tuple | list):
    return options[int(torch.randint(len(options), (), generator=generator))]


def coloured_noise(length: int, alpha: float, generator: torch.Generator) -> Tensor:
    """``(length,)`` noise whose power falls as ``f^-alpha`` (0 white, 1 pink, 2 brown, -1 blue), unit RMS."""
    white = torch.randn(length, generator=generator)
    spectrum = torch.fft.rfft(white)
    frequencies = torch.fft.rfftfreq(length, d=1.0 / SAMPLE_RATE).clamp(min=20.0)  # no DC blow-up
    shaped = torch.fft.irfft(spectrum * frequencies.pow(-alpha / 2), n=length)
    return shaped / shaped.pow(2).mean().sqrt().clamp(min=1e-8)


def room_impulse_response(rt60: float, generator: torch.Generator, *, direct_ratio_db: float) -> Tensor:
    """A synthetic room response: a unit direct path, then decaying noise (amplitude falls 60 dB in ``rt60``).

    ``direct_ratio_db`` is the direct-to-reverberant energy ratio.
    """
    length = max(1, int(rt60 * SAMPLE_RATE))
    time = torch.arange(length) / SAMPLE_RATE
    tail = torch.randn(length, generator=generator) * torch.exp(-6.9078 * time / rt60)  # ln(1000)
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # first reflections arrive after the direct sound
    tail = tail / tail.pow(2).sum().sqrt().clamp(min=1e-8) * 10 ** (-direct_ratio_db / 20)
    tail[0] = 1.0
    return tail


def pitch_shift(wave: Tensor, up: int, down: int) -> Tensor:
    """Raise the pitch by ``up / down`` (small integers), keeping the duration."""
    import torchaudio.functional as F

    n_fft, hop = 512, 128
    window = torch.hann_window(n_fft)
    spec = torch.stft(wave, n_fft, hop, window=window, return_complex=True)
    phase_advance = torch.linspace(0, math.pi * hop, n_fft // 2 + 1)[..., None]
    stretched = F.phase_vocoder(spec, down / up, phase_advance)  # longer by up / down
    longer = torch.istft(stretched, n_fft, hop, window=window)
    shifted = F.resample(longer, up, down)  # play it faster: back to the length, pitch up
    out = torch.zeros_like(wave)
    out[: min(len(wave), len(shifted))] = shifted[: len(wave)]
    return out


def telephone(wave: Tensor) -> Tensor:
    """8 kHz narrow band (300–3,400 Hz), 8-bit mu-law, back at 16 kHz."""
    import torchaudio.functional as F

    narrow = F.resample(wave, SAMPLE_RATE, 8000)
    narrow = F.highpass_biquad(narrow, 8000, 300.0)
    narrow = F.lowpass_biquad(narrow, 8000, 3400.0)
    peak = narrow.abs().max().clamp(min=1e-6)
    coded = F.mu_law_decoding(F.mu_law_encoding((narrow / peak).clamp(-1, 1), 256), 256) * peak
    return F.resample(coded, 8000, SAMPLE_RATE)[: len(wave)]


def codec_round_trip(wave: Tensor, codec: str) -> Tensor:
    """Encode with a lossy codec in memory (``soundfile``) and decode again, same length."""
    import soundfile

    container, subtype = _CODECS[codec]
    buffer = io.BytesIO()
    soundfile.write(buffer, wave.clamp(-1, 1).numpy(), SAMPLE_RATE, format=container, subtype=subtype)
    buffer.seek(0)
    decoded, rate = soundfile.read(buffer, dtype="float32")
    out = torch.from_numpy(decoded)
    if rate != SAMPLE_RATE:
        import torchaudio.functional as F

        out = F.resample(out, rate, SAMPLE_RATE)
    result = torch.zeros_like(wave)
    result[: min(len(wave), len(out))] = out[: len(wave)]
    return result


class Augmenter:
    """Applies an :class:`AugmentConfig` to one waveform at a time.

    Args:
        config: what to apply.
        babble_source: ``babble_source(generator, count)`` returns ``count`` other waveforms for
            babble noise (the dataset's own utterances); ``None``: babble becomes pink noise.
    """

    def __init__(
        self,
        config: AugmentConfig,
        babble_source: Callable[[torch.Generator, int], list[Tensor]] | None = None,
    ) -> None:
        self.config = config.check()
        self.babble_source = babble_source

    def __call__(self, wave: Tensor, generator: torch.Generator) -> tuple[Tensor, float]:
        """``(augmented waveform, time scale)``: times in the output are the input's times times the scale.

        Every probability is drawn whether or not its effect fires, so one effect's outcome
        never shifts another's draws.
        """
        import torchaudio.functional as F

        c = self.config
        rolls = torch.rand(6, generator=generator).tolist()
        scale = 1.0
        wave = wave.float()
        if rolls[0] < c.speed_prob:
            factor = float(_choice(generator, c.speeds))
            if factor != 1.0:  # faster by ``factor``: resample from 20 * factor to 20 "Hz", play at 16 kHz
                wave = F.resample(wave, int(round(factor * 20)), 20)
            scale = 1.0 / factor
        if rolls[1] < c.pitch_prob:
            up, down = _choice(generator, _PITCH_RATIOS)
            wave = pitch_shift(wave, up, down)
        if rolls[2] < c.reverb_prob:
            rt60 = _uniform(generator, *c.rt60_range)
            rir = room_impulse_response(rt60, generator, direct_ratio_db=_uniform(generator, -3.0, 9.0))
            peak = wave.abs().max()
            wave = F.fftconvolve(wave, rir)[: len(wave)]
            wave = wave * (peak / wave.abs().max().clamp(min=1e-8))
        if rolls[3] < c.noise_prob:
            snr = _uniform(generator, *c.snr_range)
            babble = float(torch.rand((), generator=generator)) < c.babble_share
            noise = self._babble(len(wave), generator) if babble else None
            if noise is None:
                colour = _choice(generator, list(_NOISE_COLOURS))
                noise = coloured_noise(len(wave), _NOISE_COLOURS[colour], generator)
            wave = F.add_noise(wave[None], noise[None], torch.tensor([snr]))[0]
        if rolls[4] < c.telephone_prob:
            wave = telephone(wave)
        if rolls[5] < c.codec_prob:
            wave = codec_round_trip(wave, _choice(generator, c.codecs))
        peak = wave.abs().max()
        if peak > 1.0:  # noise can push the sum past full scale
            wave = wave / peak
        return wave, scale

    def _babble(self, length: int, generator: torch.Generator) -> Tensor | None:
        """2–5 other utterances, each normalised and looped to ``length``, summed; ``None`` if none."""
        if self.babble_source is None:
            return None
        count = int(torch.randint(2, 6, (), generator=generator))
        voices = [v for v in self.babble_source(generator, count) if v.numel() > 0]
        if not voices:
            return None
        mixture = torch.zeros(length)
        for voice in voices:
            voice = voice / voice.pow(2).mean().sqrt().clamp(min=1e-8)
            repeats = -(-length // voice.numel())
            offset = int(torch.randint(voice.numel(), (), generator=generator))
            mixture += voice.roll(-offset).repeat(repeats)[:length]
        return mixture
