"""Speech data entries and JSON-lines manifests (NeMo style).

An :class:`AudioEntry` is one utterance before its audio is read: every source (the embedded
corpus, LibriSpeech folders, NeMo manifests) produces a list of them, and ``SpeechDataset``
consumes that list. A manifest line looks like::

    {"audio_filepath": "train/train_00000.flac", "duration": 2.91, "text": "the old farmer ...",
     "offset": 0.0, "words": [{"word": "the", "start": 0.0, "end": 0.12}, ...]}

``audio_filepath`` may be absolute or relative; relative paths are resolved against the folder
that holds the manifest (the embedded corpus writes them relative). ``offset`` and ``words`` are
optional; extra keys (``voice``, ``rate``, ``pitch``) are kept in ``AudioEntry.meta``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiattn.io import UserError, atomic_open
from multiattn.tasks.asr.sources.text import normalize_text

__all__ = ["WordTiming", "AudioEntry", "entry_to_record", "read_manifest", "write_manifest"]


@dataclass(frozen=True)
class WordTiming:
    """A word and where it is spoken, in seconds from the start of the utterance."""

    word: str
    start: float
    end: float


@dataclass
class AudioEntry:
    """One utterance: where its audio is and what is said.

    Attributes:
        path: the audio file.
        text: normalised transcript (see :func:`multiattn.tasks.asr.sources.text.normalize_text`).
        duration: seconds (``None`` when unknown; filled from the file header by the dataset).
        words: per-word timings, or ``None`` when the source has none.
        offset: seconds to skip in the file (several utterances in one long file).
        meta: anything else the source knows (voice, rate, pitch, speaker, ...).
    """

    path: Path
    text: str
    duration: float | None = None
    words: list[WordTiming] | None = None
    offset: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


_KNOWN_KEYS = {"audio_filepath", "duration", "text", "offset", "words"}


def _parse_words(raw: Any, where: str) -> list[WordTiming] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise UserError(f"{where}: 'words' must be a list of {{word, start, end}} or null")
    try:
        return [WordTiming(str(w["word"]), float(w["start"]), float(w["end"])) for w in raw]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{where}: each item of 'words' needs 'word', 'start' and 'end'") from None


def read_manifest(path: str | os.PathLike) -> list[AudioEntry]:
    """Read a JSON-lines manifest (NeMo style) into entries.

    Args:
        path: the manifest; each non-blank line a JSON object with ``audio_filepath`` and
            ``text`` (required), ``duration``, ``offset``, ``words`` (optional).

    Returns:
        The entries in file order; texts normalised, relative audio paths resolved against the
        manifest's folder.

    Raises:
        UserError: missing manifest, a line that is not JSON, or a line without the required keys
            (one line naming the manifest and the line number).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read manifest ({error})") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError:
            raise UserError(f"{where}: not a JSON object") from None
        if not isinstance(record, dict) or "audio_filepath" not in record or "text" not in record:
            raise UserError(f"{where}: a manifest line needs 'audio_filepath' and 'text'")
        audio = Path(record["audio_filepath"])
        if not audio.is_absolute():
            audio = path.parent / audio
        duration = record.get("duration")
        entries.append(
            AudioEntry(
                path=audio,
                text=normalize_text(str(record["text"])),
                duration=None if duration is None else float(duration),
                words=_parse_words(record.get("words"), where),
                offset=float(record.get("offset") or 0.0),
                meta={k: v for k, v in record.items() if k not in _KNOWN_KEYS},
            )
        )
    return entries


def entry_to_record(entry: AudioEntry, relative_to: Path | None = None) -> dict[str, Any]:
    """The manifest line of ``entry`` (path relative to ``relative_to`` when given)."""
    audio = entry.path
    if relative_to is not None:
        audio = Path(os.path.relpath(entry.path, relative_to))
    record: dict[str, Any] = {
        "audio_filepath": audio.as_posix(),
        "duration": entry.duration,
        "text": entry.text,
    }
    if entry.offset:
        record["offset"] = entry.offset
    record["words"] = (
        None
        if entry.words is None
        else [{"word": w.word, "start": w.start, "end": w.end} for w in entry.words]
    )
    record.update(entry.meta)
    return record


def write_manifest(path: str | os.PathLike, entries: Iterable[AudioEntry], *, relative: bool = True) -> None:
    """Write ``entries`` as a JSON-lines manifest, atomically.

    Args:
        path: the manifest to write.
        entries: the utterances.
        relative: write ``audio_filepath`` relative to the manifest's folder (else absolute).
    """
    path = Path(path)
    base = path.parent.resolve() if relative else None
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for entry in entries:
            entry = entry if relative else AudioEntry(**{**entry.__dict__, "path": entry.path.resolve()})
            handle.write(json.dumps(entry_to_record(entry, base), ensure_ascii=False) + "\n")
