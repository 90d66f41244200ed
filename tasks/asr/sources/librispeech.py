"""LibriSpeech folder layout reader.

Layout (Panayotov et al. 2015, as distributed on openslr.org)::

    <root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   # "<utt-id> UPPER CASE TEXT"

Durations are not in the transcripts; ``SpeechDataset`` reads them from the file headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from multiattn.io import UserError
from multiattn.tasks.asr.sources.manifest import AudioEntry
from multiattn.tasks.asr.sources.text import normalize_text

__all__ = ["read_librispeech"]

log = logging.getLogger(__name__)


def read_librispeech(root: str | os.PathLike, subsets: str | Sequence[str] = ()) -> list[AudioEntry]:
    """Entries of one or more LibriSpeech subsets.

    Args:
        root: folder holding the subsets (e.g. ``LibriSpeech/``), or a subset folder itself.
        subsets: subset names under ``root`` (``"train-clean-100"``, ...); empty = ``root`` is
            searched as it is.

    Returns:
        One entry per transcript line whose audio file exists, sorted by utterance id; lines
        whose ``.flac`` is missing are skipped with a warning.

    Raises:
        UserError: ``root`` or a subset is missing, or no ``*.trans.txt`` is found under it.
    """
    root = Path(root)
    names = [subsets] if isinstance(subsets, str) else list(subsets)
    folders = [root / name for name in names] if names else [root]
    entries: list[AudioEntry] = []
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: LibriSpeech folder not found")
        transcripts = sorted(folder.rglob("*.trans.txt"))
        if not transcripts:
            raise UserError(f"{folder}: no '*.trans.txt' files (is this a LibriSpeech subset?)")
        missing = 0
        for transcript in transcripts:
            for line in transcript.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                utt_id, _, text = line.strip().partition(" ")
                audio = transcript.parent / f"{utt_id}.flac"
                if not audio.is_file():
                    missing += 1
                    continue
                speaker = utt_id.split("-")[0]
                entries.append(
                    AudioEntry(path=audio, text=normalize_text(text), meta={"id": utt_id, "speaker": speaker})
                )
        if missing:
            log.warning("%s: %d transcript lines have no .flac file; skipped", folder, missing)
    entries.sort(key=lambda e: e.meta["id"])
    return entries
