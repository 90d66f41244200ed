"""The independent-synthesiser split: open-corpus sentences spoken by flite and festival voices.

An evaluation split only: these voices are never trained or tuned on, so the split checks that a
model learnt speech rather than espeak-ng. Voices (Debian packages ``flite``, ``festival``,
``festvox-kallpc16k``): flite's ``kal`` (8 kHz diphones), ``kal16``, ``awb``, ``rms``, ``slt``
(16 kHz cluster units) and festival's ``kal_diphone``, dealt out in turn. Both programs are
deterministic. They give no word timings (``words: null``).

The sentences are the open corpus's ``test_other_synth.txt`` (drawn with the other evaluation
sentences, never in training). Cached beside the corpus, ``<corpus>-other-synth/``
(``test_other_synth.jsonl``, ``test_other_synth/*.flac``), generated on first use.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from multiattn.datacache import cached_generate
from multiattn.io import UserError
from multiattn.tasks.asr.sources.corpus import SAMPLE_RATE, _trim_words
from multiattn.tasks.asr.sources.manifest import AudioEntry, write_manifest

__all__ = ["OTHER_VOICES", "SPLIT", "missing_programs", "other_synth_split"]

OTHER_VOICES = ("flite:kal", "flite:kal16", "flite:awb", "flite:rms", "flite:slt", "festival:kal_diphone")
"""``program:voice`` of the split, used in turn."""
SPLIT = "test_other_synth"
INSTALL_HINT = "apt-get install flite festival festvox-kallpc16k"
GENERATOR_VERSION = 1


def missing_programs() -> list[str]:
    """The programs of :data:`OTHER_VOICES` not found on ``PATH``."""
    return [name for name in ("flite", "festival") if shutil.which(name) is None]


def _festival(texts: list[str], voice: str, folder: Path) -> list[Path]:
    """All of ``texts`` in one festival process (its start-up costs about half a second)."""
    paths = [folder / f"festival_{i:05d}.wav" for i in range(len(texts))]
    script = [f"(voice_{voice})"] + [
        f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{path}" \'riff)'
        for text, path in zip(texts, paths)
    ]
    (folder / "script.scm").write_text("\n".join(script) + "\n", encoding="utf-8")
    subprocess.run(["festival", "-b", str(folder / "script.scm")], check=True, capture_output=True)
    return paths


def _generate(root: Path, texts: list[str]) -> dict[str, Any]:
    import soundfile
    import torch
    import torchaudio

    voices = [OTHER_VOICES[i % len(OTHER_VOICES)] for i in range(len(texts))]
    (root / SPLIT).mkdir()
    entries = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        festival_items = [i for i, v in enumerate(voices) if v.startswith("festival:")]
        wavs: dict[int, Path] = {}
        for voice in sorted({voices[i] for i in festival_items}):
            items = [i for i in festival_items if voices[i] == voice]
            for i, path in zip(items, _festival([texts[i] for i in items], voice.split(":")[1], folder)):
                wavs[i] = path
        for index, (text, voice) in enumerate(zip(texts, voices)):
            if index not in wavs:
                wavs[index] = folder / f"flite_{index:05d}.wav"
                subprocess.run(
                    ["flite", "-voice", voice.split(":")[1], "-t", text, "-o", str(wavs[index])],
                    check=True,
                    capture_output=True,
                )
            samples, rate = soundfile.read(str(wavs[index]), dtype="float32")
            wave = torchaudio.functional.resample(torch.from_numpy(samples), rate, SAMPLE_RATE).numpy()
            _, speech_end = _trim_words(text.split()[:1], [0], wave)
            wave = wave[: min(len(wave), speech_end + int(0.15 * SAMPLE_RATE))]
            pcm = np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)
            path = root / SPLIT / f"{SPLIT}_{index:05d}.flac"
            soundfile.write(str(path), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            entries.append(
                AudioEntry(
                    path=path,
                    text=text,
                    duration=round(len(pcm) / SAMPLE_RATE, 4),
                    meta={"voice": voice, "rate": None, "pitch": None},
                )
            )
    write_manifest(root / f"{SPLIT}.jsonl", entries, relative=True)
    return {"splits": {SPLIT: len(entries)}, "hours": round(sum(e.duration or 0 for e in entries) / 3600, 3)}


def other_synth_split(corpus_root: str | Path) -> Path:
    """Generate (or reuse) the split for the open corpus in ``corpus_root``; its manifest path.

    Raises:
        UserError: flite or festival is not installed (one line naming what to install).
    """
    corpus_root = Path(corpus_root)
    missing = missing_programs()
    if missing:
        raise UserError(
            f"{corpus_root}: the independent-synthesiser split needs {' and '.join(missing)}: {INSTALL_HINT}"
        )
    from multiattn.tasks.asr.sources.open_corpus import read_lines

    texts = read_lines(corpus_root / "test_other_synth.txt")
    params = {"version": GENERATOR_VERSION, "voices": list(OTHER_VOICES), "texts": texts}
    root = corpus_root.parent / f"{corpus_root.name}-other-synth"
    cached_generate(root, params, lambda folder: _generate(folder, texts))
    return root / f"{SPLIT}.jsonl"
