"""Timed segments and the transcript files ``multiattn transcribe --output-format`` writes.

:func:`build_segments` groups a recording's timed words into subtitle-sized segments: a new
segment starts after a pause (a gap of at least ``pause`` seconds between two words), or when the
next word would make the segment longer than ``max_chars`` characters or ``max_seconds`` seconds.
Each segment is ``{"start", "end", "text", "words": [{"word", "start", "end", "probability"}]}``
(whisper's layout; times in seconds).

The writers turn a transcription record into the formats speech users expect (the same ones as
whisper): ``txt`` (one segment per line), ``srt`` (SubRip), ``vtt`` (WebVTT), ``tsv`` (``start``,
``end`` in integer milliseconds and ``text``) and ``json`` (the ``--json`` record). The subtitle
formats are a few lines of text each; they are written here rather than through a subtitle library
so that inference needs no extra package, and the tests read them back with the ``srt`` and
``webvtt-py`` parsers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["OUTPUT_FORMATS", "build_segments", "render", "srt_time", "vtt_time"]

OUTPUT_FORMATS = ("txt", "json", "srt", "vtt", "tsv")


def build_segments(
    words: Sequence[dict[str, Any]],
    *,
    max_chars: int = 42,
    max_seconds: float = 7.0,
    pause: float = 0.6,
) -> list[dict[str, Any]]:
    """Group timed words (in time order) into segments (module docstring)."""
    segments: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for word in words:
        if current:
            text_length = len(" ".join(w["word"] for w in current)) + 1 + len(word["word"])
            if (
                word["start"] - current[-1]["end"] >= pause
                or text_length > max_chars
                or word["end"] - current[0]["start"] > max_seconds
            ):
                segments.append(_segment(current))
                current = []
        current.append(word)
    if current:
        segments.append(_segment(current))
    return segments


def _segment(words: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "start": words[0]["start"],
        "end": words[-1]["end"],
        "text": " ".join(w["word"] for w in words),
        "words": list(words),
    }


def _clock(seconds: float, separator: str) -> str:
    millis = max(int(round(seconds * 1000)), 0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm``."""
    return _clock(seconds, ",")


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm``."""
    return _clock(seconds, ".")


def _cues(record: dict[str, Any]) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` per non-empty segment, each lasting at least 1 ms."""
    cues = []
    for segment in record.get("segments") or []:
        text = " ".join(str(segment["text"]).split())  # one line, no blank lines inside a cue
        if text:
            start = float(segment["start"])
            cues.append((start, max(float(segment["end"]), start + 0.001), text))
    return cues


def render(record: dict[str, Any], output_format: str) -> str:
    """The file contents of ``record`` (a ``transcribe --json`` record) in ``output_format``."""
    cues = _cues(record)
    if output_format == "txt":
        return "".join(f"{text}\n" for _, _, text in cues)
    if output_format == "json":
        return json.dumps(record, ensure_ascii=False) + "\n"
    if output_format == "srt":
        return "".join(
            f"{index}\n{srt_time(start)} --> {srt_time(end)}\n{text}\n\n"
            for index, (start, end, text) in enumerate(cues, 1)
        )
    if output_format == "vtt":
        body = "".join(f"{vtt_time(start)} --> {vtt_time(end)}\n{text}\n\n" for start, end, text in cues)
        return "WEBVTT\n\n" + body
    if output_format == "tsv":
        rows = "".join(
            f"{int(round(start * 1000))}\t{int(round(end * 1000))}\t{text}\n" for start, end, text in cues
        )
        return "start\tend\ttext\n" + rows
    raise ValueError(f"output_format: expected one of {list(OUTPUT_FORMATS)}, received {output_format!r}")
