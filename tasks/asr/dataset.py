"""One dataset class for every speech source: the embedded corpus, LibriSpeech, NeMo manifests.

Sources produce :class:`~multiattn.tasks.asr.sources.manifest.AudioEntry` lists; :class:`SpeechDataset`
checks them once (``soundfile.info``: readable, non-empty, duration known), drops those over
``max_duration``, and reads audio lazily through :func:`multiattn.tasks.asr.audio.load_audio` (16 kHz mono).
Bad files are skipped with a warning and counted, never allowed to stop an epoch: a file that
fails at load time is replaced by the next good item.

Shapes: ``N`` samples at 16 kHz.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile
import torch
from torch.utils.data import Dataset

from multiattn.io import UserError
from multiattn.tasks.asr.audio import SAMPLE_RATE, load_audio
from multiattn.tasks.asr.sources.librispeech import read_librispeech
from multiattn.tasks.asr.sources.manifest import AudioEntry, WordTiming, read_manifest

__all__ = ["SpeechItem", "SpeechDataset", "AugmentedSpeechDataset"]

log = logging.getLogger(__name__)


@dataclass
class SpeechItem:
    """One utterance ready for feature extraction.

    Attributes:
        waveform: ``(N,)`` float32 at 16 kHz, mono.
        text: normalised transcript (a-z, apostrophe, single spaces).
        words: word timings in seconds (embedded corpus), else ``None``.
        path: the audio file it came from.
    """

    waveform: torch.Tensor
    text: str
    words: list[WordTiming] | None
    path: str


class SpeechDataset(Dataset):
    """Map-style dataset over audio entries, robust to bad files.

    Args:
        entries: utterances from any source (see ``multiattn.tasks.asr.sources``).
        sample_rate: rate of the returned waveforms.
        max_duration: drop entries longer than this many seconds (``None`` keeps all).
        min_duration: drop entries shorter than this many seconds.
        check_files: read every file header once now (``soundfile.info``), skipping unreadable
            or empty files and filling unknown durations; ``False`` trusts the entries.
        drop_empty_text: drop entries whose normalised transcript is empty.

    Attributes:
        entries: the kept entries, in order.
        num_skipped: entries dropped at construction because their file is bad.
        num_filtered: entries dropped by the duration / empty-text filters.
        num_load_failures: files that failed when loaded later (each replaced by another item).
    """

    def __init__(
        self,
        entries: Sequence[AudioEntry],
        *,
        sample_rate: int = SAMPLE_RATE,
        max_duration: float | None = None,
        min_duration: float = 0.0,
        check_files: bool = True,
        drop_empty_text: bool = True,
    ) -> None:
        self.sample_rate = sample_rate
        self.num_skipped = 0
        self.num_filtered = 0
        self.num_load_failures = 0
        self._failed: set[int] = set()
        kept: list[AudioEntry] = []
        for entry in entries:
            if check_files and not self._check(entry):
                self.num_skipped += 1
                continue
            too_long = (
                max_duration is not None and entry.duration is not None and entry.duration > max_duration
            )
            too_short = entry.duration is not None and entry.duration < min_duration
            if too_long or too_short or (drop_empty_text and not entry.text):
                self.num_filtered += 1
                continue
            kept.append(entry)
        self.entries = kept
        if self.num_skipped:
            log.warning("skipped %d unreadable or empty audio files of %d", self.num_skipped, len(entries))
        if not kept and entries:
            raise UserError(f"no usable utterance among {len(entries)} entries (bad files or all filtered)")

    @staticmethod
    def _check(entry: AudioEntry) -> bool:
        """Header check; fills ``entry.duration`` when unknown. ``False`` (with a warning) when bad."""
        try:
            info = soundfile.info(str(entry.path))
        except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
            reason = "file not found" if not Path(entry.path).exists() else " ".join(str(error).split())
            log.warning("skipping %s: %s", entry.path, reason)
            return False
        if info.frames <= 0 or info.samplerate <= 0:
            log.warning("skipping %s: empty audio (0 samples)", entry.path)
            return False
        available = info.frames / info.samplerate - entry.offset
        if available <= 0:
            log.warning("skipping %s: offset %.2f s is past the end of the file", entry.path, entry.offset)
            return False
        if entry.duration is None:
            entry.duration = available
        return True

    @classmethod
    def from_manifest(cls, path: str | os.PathLike, **kwargs) -> SpeechDataset:
        """Dataset of a NeMo-style JSON-lines manifest (also the embedded corpus's ``<split>.jsonl``)."""
        return cls(read_manifest(path), **kwargs)

    @classmethod
    def from_librispeech(
        cls, root: str | os.PathLike, subsets: str | Sequence[str] = (), **kwargs
    ) -> SpeechDataset:
        """Dataset of LibriSpeech subsets under ``root`` (see :func:`read_librispeech`)."""
        return cls(read_librispeech(root, subsets), **kwargs)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def durations(self) -> list[float]:
        """Seconds per kept entry (0.0 when unknown), e.g. for length-bucketed sampling."""
        return [entry.duration or 0.0 for entry in self.entries]

    def load(self, index: int) -> SpeechItem:
        """Item ``index``; raises :class:`UserError` if its file cannot be used."""
        entry = self.entries[index]
        duration = entry.duration if entry.offset else None
        waveform = load_audio(entry.path, self.sample_rate, offset=entry.offset, duration=duration)
        return SpeechItem(waveform=waveform, text=entry.text, words=entry.words, path=str(entry.path))

    def __getitem__(self, index: int) -> SpeechItem:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} utterances")
        for step in range(len(self.entries)):
            candidate = (index + step) % len(self.entries)
            if candidate in self._failed:
                continue
            try:
                return self.load(candidate)
            except UserError as error:  # one bad file must not end the epoch
                self._failed.add(candidate)
                self.num_load_failures += 1
                log.warning("skipping %s (replaced by the next utterance)", error)
        raise UserError(f"every one of the {len(self.entries)} audio files failed to load")


class AugmentedSpeechDataset(Dataset):
    """A :class:`SpeechDataset` whose waveforms pass through an :class:`~multiattn.tasks.asr.augment.Augmenter`.

    Items are addressed by ``(epoch, index)`` (the training batch sampler's keys with
    ``with_epoch=True``) or by a plain index (epoch 0: the fixed degradations of an evaluation
    split). Every draw, the babble's other utterances included, comes from
    :func:`~multiattn.tasks.asr.augment.item_generator` of ``(seed, epoch, index)``. Word times are
    rescaled when the speed changes.

    Args:
        dataset: the clean utterances.
        config: what to apply (:class:`~multiattn.tasks.asr.augment.AugmentConfig`).
        seed: base seed of the draws.
    """

    def __init__(self, dataset: SpeechDataset, config, *, seed: int = 0) -> None:
        from multiattn.tasks.asr.augment import Augmenter

        self.dataset = dataset
        self.seed = seed
        self.augmenter = Augmenter(config, babble_source=self._babble)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def durations(self) -> list[float]:
        return self.dataset.durations

    @property
    def entries(self) -> list[AudioEntry]:
        return self.dataset.entries

    def _babble(self, generator: torch.Generator, count: int) -> list[torch.Tensor]:
        picks = torch.randint(len(self.dataset), (count,), generator=generator).tolist()
        return [self.dataset[i].waveform for i in picks]

    def __getitem__(self, key: int | tuple[int, int]) -> SpeechItem:
        from multiattn.tasks.asr.augment import item_generator

        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.dataset[index]
        waveform, scale = self.augmenter(item.waveform, item_generator(self.seed, epoch, index))
        words = item.words
        if words is not None and scale != 1.0:
            words = [WordTiming(w.word, round(w.start * scale, 4), round(w.end * scale, 4)) for w in words]
        return SpeechItem(waveform=waveform, text=item.text, words=words, path=item.path)
