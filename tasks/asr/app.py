"""``multiattn transcribe``: speech files -> text, word times and attention overlays.

    multiattn transcribe AUDIO... --ckpt C [--beam-size K] [--ctc-weight W] [--lm-weight L] [--mode joint]
                         [--overlay-dir D] [--json] [--max-seconds S] [--batch-size B]

Any wav / flac / ogg (any rate, mono or stereo) is read as 16 kHz mono by
:func:`tasks.asr.audio.load_audio`; a file that cannot be used is reported on one line and the
others still run. Recordings longer than ``--max-seconds`` are cut at quiet points
(:func:`tasks.asr.audio.segment_audio`), the segments decoded in batches with the rest, and the
texts and word times joined. ``--json`` prints one object per file: ``file``, ``text``, ``words``
(``[{"word", "start", "end"}]`` in seconds, from the CTC forced alignment of the decoded
tokens: characters, or sentencepiece pieces where a piece starting with ``▁`` begins a word),
``duration`` and ``segments``. ``--overlay-dir`` writes, per file (per segment for long files),
the spectrogram with the decoder's attention alignment and the CTC alignment below.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from multiattn.apps import app_parser, expand_inputs, resolve_device, run_app
from multiattn.io import UserError
from tasks.asr.alignment import ctc_word_spans
from tasks.asr.audio import SAMPLE_RATE, load_audio, segment_audio
from tasks.asr.decode import DECODING_MODES

__all__ = ["main"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga")


def build_parser() -> argparse.ArgumentParser:
    parser = app_parser(
        "transcribe", "Transcribe speech with a joint CTC/attention checkpoint.", "audio files or folders"
    )
    parser.add_argument(
        "--beam-size", type=int, default=None, help="beam size (default: the checkpoint's, 10)"
    )
    parser.add_argument(
        "--ctc-weight",
        type=float,
        default=None,
        help="CTC weight of joint decoding in [0, 1] (default: the checkpoint's)",
    )
    parser.add_argument(
        "--lm-weight",
        type=float,
        default=None,
        help="shallow-fusion weight of the checkpoint's language model, >= 0; 0 = off "
        "(default: the checkpoint's decoding.lm_weight)",
    )
    parser.add_argument(
        "--mode", choices=DECODING_MODES, default="joint", help="decoding (default joint CTC/attention)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="longer recordings are decoded in segments of at most this",
    )
    return parser


def _load_system(args: argparse.Namespace, device: torch.device):
    from multiattn.checkpoint import load_system
    from tasks.asr.system import ASRSystem

    if not Path(args.ckpt).is_file():
        raise UserError(f"{args.ckpt}: checkpoint not found")
    return load_system(ASRSystem, args.ckpt, map_location=device)


def _segments(path: Path, max_seconds: float) -> list[tuple[int, torch.Tensor]]:
    wave = load_audio(path, SAMPLE_RATE)
    return segment_audio(wave, SAMPLE_RATE, max_seconds)


def predict(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    if args.beam_size is not None and args.beam_size < 1:
        raise UserError(f"--beam-size {args.beam_size}: expected at least 1")
    if args.ctc_weight is not None and not 0.0 <= args.ctc_weight <= 1.0:
        raise UserError(f"--ctc-weight {args.ctc_weight}: expected a value in [0, 1]")
    if args.lm_weight is not None and args.lm_weight < 0:
        raise UserError(f"--lm-weight {args.lm_weight}: expected a value >= 0")
    if args.max_seconds < 1.0:
        raise UserError(f"--max-seconds {args.max_seconds}: expected at least 1")
    device = resolve_device(args.device)
    system = _load_system(args, device)
    try:  # before any audio is read
        system.resolve_lm_weight(args.lm_weight)
    except UserError as err:
        raise UserError(f"{args.ckpt}: {err}") from None
    files = expand_inputs(args.inputs, AUDIO_EXTENSIONS)
    for start in range(0, len(files), args.batch_size):
        yield from _transcribe_files(system, files[start : start + args.batch_size], args, device)


def _transcribe_files(
    system, files: Sequence[Path], args: argparse.Namespace, device: torch.device
) -> Iterator[dict]:
    pieces: list[tuple[int, int, torch.Tensor]] = []  # (file index, start sample, waveform)
    errors: dict[int, str] = {}
    durations: dict[int, float] = {}
    for index, path in enumerate(files):
        try:
            segments = _segments(path, args.max_seconds)
        except UserError as err:
            errors[index] = str(err).removeprefix(f"{path}: ")
            continue
        durations[index] = sum(chunk.numel() for _, chunk in segments) / SAMPLE_RATE
        pieces.extend((index, offset, chunk) for offset, chunk in segments)
    overlay = args.overlay_dir is not None
    # Short segments together, long ones together: less padding per batch.
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][2].numel())
    decoded: dict[int, Any] = {}
    for start in range(0, len(order), args.batch_size):
        chunk_ids = order[start : start + args.batch_size]
        lengths = torch.tensor([pieces[i][2].numel() for i in chunk_ids])
        wave = torch.zeros(len(chunk_ids), int(lengths.max()))
        for row, i in enumerate(chunk_ids):
            wave[row, : pieces[i][2].numel()] = pieces[i][2]
        outs = system.decode(
            wave.to(device),
            lengths.to(device),
            mode=args.mode,
            beam_size=args.beam_size,
            ctc_weight=args.ctc_weight,
            lm_weight=args.lm_weight,
            return_attention=overlay,
        )
        decoded.update(zip(chunk_ids, outs))
    for index, path in enumerate(files):
        if index in errors:
            yield {"file": str(path), "error": errors[index]}
            continue
        own = [i for i in range(len(pieces)) if pieces[i][0] == index]
        texts, words = [], []
        for number, piece_id in enumerate(own):
            result = decoded[piece_id]
            offset = pieces[piece_id][1] / SAMPLE_RATE
            ranges = system.tokenizer.word_ranges(result.tokens)  # characters or pieces (▁ starts a word)
            spans = ctc_word_spans(
                result.ctc_log_probs, result.tokens, ranges, blank_id=system.tokenizer.blank_id
            )
            if result.text:
                texts.append(result.text)
            for span in spans or []:
                words.append(
                    {
                        "word": span.word,
                        "start": round(offset + span.start, 3),
                        "end": round(offset + span.end, 3),
                    }
                )
            if overlay:
                suffix = f"_seg{number:03d}" if len(own) > 1 else ""
                _write_overlay(
                    system,
                    result,
                    args.overlay_dir / f"{path.stem}{suffix}.png",
                    f"{path.name}: {result.text}",
                )
        yield {
            "file": str(path),
            "text": " ".join(texts),
            "words": words,
            "duration": round(durations[index], 3),
            "segments": len(own),
        }


def _write_overlay(system, result, path: Path, title: str) -> None:
    from multiattn.viz import save_figure

    fig = system.overlay_figure(result, title=title)
    save_figure(fig, path)
    fig.clear()


def format_text(record: dict[str, Any]) -> str:
    return f"{record['file']}\t{record['text']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``multiattn transcribe``."""
    with torch.inference_mode():
        return run_app(argv, build_parser(), predict, format_text)
