"""Reading any audio file as 16 kHz mono, and cutting long recordings into segments.

Every input of the speech task (datasets, ``multiattn transcribe``) goes through
:func:`load_audio`: wav / flac / ogg at any sample rate, integer or float samples, mono or
multi-channel, read with ``soundfile`` (``torchaudio.load`` needs TorchCodec since 2.9),
mixed down to mono and resampled with ``torchaudio.functional.resample``. A file that cannot be
used raises :class:`multiattn.io.UserError` with one line naming the file and the problem.

:func:`segment_audio` splits recordings longer than the model's trained length (attention cost
and memory grow with length) into chunks cut at the quietest point near each boundary, so
words are rarely split.

Shapes: ``N`` samples.
"""

from __future__ import annotations

import os
import warnings
import wave as wavefile
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

from multiattn.io import UserError

__all__ = [
    "AUDIO_EXTENSIONS",
    "SAMPLE_RATE",
    "SILENCE_PEAK",
    "TruncatedAudioWarning",
    "load_audio",
    "prepare_waveform",
    "segment_audio",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
"""File types :func:`load_audio` decodes (libsndfile >= 1.1 reads MP3 and Opus); folder search uses them."""


class TruncatedAudioWarning(UserWarning):
    """A WAV file holds fewer samples than its header declares (a cut-off download or copy)."""


SAMPLE_RATE = 16000
"""Sample rate of every waveform the speech task sees."""

SILENCE_PEAK = 1e-4
"""A file whose absolute peak (full scale = 1) stays below this is refused as silent."""


def load_audio(
    path: str | os.PathLike,
    target_sr: int = SAMPLE_RATE,
    *,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Read an audio file as a mono float waveform at ``target_sr``.

    Args:
        path: a wav / flac / ogg (anything libsndfile reads) file.
        target_sr: sample rate of the result.
        offset: seconds to skip at the start (NeMo manifests' ``offset``).
        duration: seconds to read from ``offset`` (``None`` = to the end).

    Returns:
        ``(N,)`` float32 tensor in [-1, 1].

    Raises:
        UserError: ``"<path>: <problem>"`` when the file is missing, not audio / unreadable,
            empty (no samples) or silent (peak below :data:`SILENCE_PEAK`).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an audio file")
    try:
        with soundfile.SoundFile(str(path)) as handle:
            sample_rate = handle.samplerate
            start = int(round(offset * sample_rate))
            if start:
                handle.seek(min(start, handle.frames))
            frames = -1 if duration is None else int(round(duration * sample_rate))
            data = handle.read(frames, dtype="float32", always_2d=True)  # (N, channels)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"{path}: not a readable audio file ({reason})") from None
    if start == 0 and duration is None:
        _warn_if_truncated(path, data.shape[0], sample_rate)
    return prepare_waveform(data, sample_rate, target_sr, name=str(path))


def _warn_if_truncated(path: Path, frames: int, sample_rate: int) -> None:
    """Warn when a PCM WAV's header declares more frames than were decoded.

    libsndfile silently shortens a truncated WAV to the data present; the standard library's
    ``wave`` reads the declared length from the header (PCM only: other WAVs are not checked).
    """
    if path.suffix.lower() not in (".wav", ".wave"):
        return
    try:
        with wavefile.open(str(path), "rb") as header:
            declared = header.getnframes()
    except (wavefile.Error, EOFError, OSError):
        return
    if declared > frames:
        warnings.warn(
            f"truncated WAV: the header declares {declared / sample_rate:.2f} s but the file holds "
            f"{frames / sample_rate:.2f} s; transcribing what is there",
            TruncatedAudioWarning,
            stacklevel=3,
        )


def prepare_waveform(
    data: np.ndarray | torch.Tensor, sample_rate: int, target_sr: int = SAMPLE_RATE, *, name: str = "audio"
) -> torch.Tensor:
    """Samples of any shape the readers give -> a checked mono float waveform at ``target_sr``.

    Args:
        data: ``(N,)``, ``(N, channels)`` or ``(channels, N)`` (the shorter side is the channels).
        sample_rate: its rate.
        target_sr: rate of the result.
        name: names the input in errors.

    Raises:
        UserError: ``"<name>: <problem>"`` for empty, non-finite or silent audio, or a bad shape / rate.
    """
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.asarray(data, dtype=np.float32)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise UserError(f"{name}: sample rate {sample_rate!r}: expected a positive integer")
    if data.ndim == 1:
        data = data[:, None]
    elif data.ndim == 2 and 0 < data.shape[0] < data.shape[1]:
        data = data.T  # (channels, N) -> (N, channels)
    if data.ndim != 2:
        raise UserError(f"{name}: audio of shape {data.shape}: expected (N,) or (N, channels)")
    if data.size == 0:
        raise UserError(f"{name}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise UserError(f"{name}: audio contains NaN or infinite samples")
    mono = data.mean(axis=1)  # (N,)
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise UserError(f"{name}: silent audio (peak {peak:.1e} below {SILENCE_PEAK:.0e})")
    wave = torch.from_numpy(np.ascontiguousarray(mono))
    if sample_rate != target_sr:
        wave = torchaudio.functional.resample(wave, int(sample_rate), target_sr)
    return wave.to(torch.float32)


def _frame_energy(wave: torch.Tensor, frame: int) -> torch.Tensor:
    """Mean square per non-overlapping frame: ``(N,) -> (N // frame,)``."""
    usable = (wave.numel() // frame) * frame
    return wave[:usable].reshape(-1, frame).pow(2).mean(dim=1)  # (N // frame, frame) -> (N // frame,)


def segment_audio(
    wave: torch.Tensor,
    sr: int,
    max_seconds: float,
    overlap_seconds: float = 0.0,
    *,
    search_seconds: float | None = None,
) -> list[tuple[int, torch.Tensor]]:
    """Cut a long recording into chunks of at most ``max_seconds``, at low-energy points.

    Each boundary is placed at the quietest 20 ms frame in the last ``search_seconds`` (default:
    a quarter of ``max_seconds``, at most 3 s) before the chunk's length limit, so cuts fall in
    pauses between words when there are any. Consecutive chunks overlap by ``overlap_seconds``
    (0 is usually right when cuts are in pauses; a caller that overlaps must merge the texts).
    The chunks cover every sample: chunk ``k+1`` starts at or before the end of chunk ``k``.

    Args:
        wave: ``(N,)`` waveform.
        sr: its sample rate.
        max_seconds: longest chunk.
        overlap_seconds: overlap between consecutive chunks, ``< max_seconds / 2``.
        search_seconds: window before each limit searched for the quietest frame.

    Returns:
        ``[(start_sample, chunk (n_k,)), ...]`` in time order; one item when ``N`` fits.
    """
    if wave.dim() != 1:
        raise ValueError(f"segment_audio expects a (N,) waveform, got shape {tuple(wave.shape)}")
    max_len = int(round(max_seconds * sr))
    overlap = int(round(overlap_seconds * sr))
    if max_len <= 0 or overlap < 0 or 2 * overlap >= max_len:
        raise ValueError(
            f"segment_audio needs max_seconds > 0 and 0 <= overlap_seconds < max_seconds / 2, "
            f"got {max_seconds} and {overlap_seconds}"
        )
    if search_seconds is None:
        search_seconds = min(max_seconds / 4, 3.0)
    search = max(1, min(int(round(search_seconds * sr)), max_len - 2 * overlap - 1))
    frame = max(1, int(0.02 * sr))
    total = wave.numel()
    chunks: list[tuple[int, torch.Tensor]] = []
    start = 0
    while True:
        limit = start + max_len
        if limit >= total:
            chunks.append((start, wave[start:]))
            return chunks
        window_start = limit - search
        energy = _frame_energy(wave[window_start:limit], min(frame, search))
        # cut at the end of the quietest frame; the latest one on ties keeps chunks long
        quietest = int(energy.numel() - 1 - torch.argmin(energy.flip(0)).item()) if energy.numel() else 0
        cut = min(limit, window_start + (quietest + 1) * min(frame, search))
        chunks.append((start, wave[start:cut]))
        start = max(cut - overlap, start + 1)
