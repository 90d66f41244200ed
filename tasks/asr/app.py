"""``multiattn transcribe``: speech files -> text, timed words and segments, subtitle files, overlays.

    multiattn transcribe AUDIO... --ckpt C [--beam-size K] [--ctc-weight W] [--lm-weight L] [--mode joint]
                         [--output-format txt|json|srt|vtt|tsv|all] [--output-dir D]
                         [--overlay-dir D] [--json] [--max-seconds S] [--batch-size B]

A thin layer over :class:`multiattn.tasks.asr.pipeline.SpeechPipeline` (what ``multiattn.load`` returns for
a speech checkpoint), which documents the record ``--json`` prints (``file``, ``text``, ``words``
with times and probabilities, ``duration``, ``segments``). ``--output-format`` also writes
``D/<stem>.<format>`` per file (:mod:`multiattn.tasks.asr.subtitles`; ``all`` writes the five).
``--overlay-dir`` writes, per file (per piece for recordings longer than ``--max-seconds``), the
spectrogram with the decoder's attention alignment and the CTC alignment below. A file that cannot
be used is reported on one line and the others still run; a truncated WAV is transcribed with a
warning.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multiattn.apps import AppJob, app_parser, expand_inputs, run_app
from multiattn.io import UserError, atomic_open
from multiattn.pipeline import Result
from multiattn.tasks.asr.audio import AUDIO_EXTENSIONS
from multiattn.tasks.asr.decode import DECODING_MODES
from multiattn.tasks.asr.pipeline import SpeechPipeline
from multiattn.tasks.asr.subtitles import OUTPUT_FORMATS, render

__all__ = ["AUDIO_EXTENSIONS", "main", "build_parser", "format_text"]


def build_parser() -> argparse.ArgumentParser:
    parser = app_parser(
        "transcribe", "Transcribe speech with a joint CTC/attention checkpoint.", "audio files or folders"
    )
    parser.add_argument(
        "--beam-size", type=int, default=None, help="beam size, >= 1 (default: the checkpoint's, 10)"
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
        help="shallow-fusion weight of the checkpoint's language model, finite and >= 0; 0 = off "
        "(default: the checkpoint's decoding.lm_weight)",
    )
    parser.add_argument(
        "--mode", choices=DECODING_MODES, default="joint", help="decoding (default joint CTC/attention)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="longer recordings are decoded in pieces of at most this many seconds (finite, >= 1)",
    )
    parser.add_argument(
        "--output-format",
        choices=(*OUTPUT_FORMATS, "all"),
        default=None,
        help="also write a transcript file per input: txt, json, srt, vtt, tsv or all of them",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="folder of the --output-format files (default: the current folder)",
    )
    return parser


def _setup(args: argparse.Namespace) -> AppJob:
    options = {
        "mode": args.mode,
        "beam_size": args.beam_size,
        "ctc_weight": args.ctc_weight,
        "lm_weight": args.lm_weight,
        "max_seconds": args.max_seconds,
        "decoder_attention": args.overlay_dir is not None,
    }
    SpeechPipeline.check_options(options)
    if args.output_dir is not None and args.output_format is None:
        raise UserError(f"--output-dir {args.output_dir}: needs --output-format")
    files = expand_inputs(args.inputs, AUDIO_EXTENSIONS)
    pipeline = SpeechPipeline.from_checkpoint(args.ckpt, args.device, lm_weight=args.lm_weight)
    job = AppJob(pipeline, files, options)
    if args.output_format is not None:
        formats = OUTPUT_FORMATS if args.output_format == "all" else (args.output_format,)
        folder = args.output_dir if args.output_dir is not None else Path(".")
        job.output_dir = ("--output-dir", folder)
        job.output_names = lambda stem: [f"{stem}.{fmt}" for fmt in formats]
        job.write_outputs = lambda result, stem, into: _write_outputs(result, into, stem, formats)
    return job


def _write_outputs(result: Result, folder: Path, stem: str, formats: Sequence[str]) -> None:
    """Write one result's files into ``folder`` (a fresh staging folder; existing targets were
    checked against ``--overwrite`` before inference)."""
    record = result.to_dict()
    for fmt in formats:
        with atomic_open(folder / f"{stem}.{fmt}", "w", encoding="utf-8") as handle:
            handle.write(render(record, fmt))


def format_text(record: dict[str, Any]) -> str:
    return f"{record['file']}\t{record['text']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``multiattn transcribe``."""
    return run_app(argv, build_parser(), _setup, format_text)
