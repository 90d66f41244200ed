"""``multiattn caption IMG... --ckpt C [--beam-size K] [--overlay-dir D] [--json]``.

A thin layer over :class:`multiattn.tasks.captioning.pipeline.CaptioningPipeline` (what ``multiattn.load``
returns for a captioning checkpoint). Prints one line per image (``<file>\\t<caption>``) or, with
``--json``, each result's ``to_dict()``: ``file``, ``caption``, ``words``, ``score``,
``attention_peaks`` and ``overlay`` (with ``--overlay-dir``: the image, then one panel per word
with that word's attention upsampled over it). A file that cannot be read is reported on stderr as
one line naming it and what is wrong; the others are still captioned.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from multiattn.apps import AppJob, app_parser, expand_inputs, run_app
from multiattn.tasks.captioning.images import IMAGE_EXTENSIONS
from multiattn.tasks.captioning.pipeline import CaptioningPipeline

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = app_parser(
        "caption", "Caption images with a trained captioning checkpoint.", "image files or folders"
    )
    parser.add_argument(
        "--beam-size", type=int, default=None, help="beam size, >= 1 (default: the checkpoint's; 1 = greedy)"
    )
    parser.add_argument(
        "--max-len", type=int, default=None, help="longest caption, >= 1 (default: the checkpoint's)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=None,
        help="length normalisation exponent, finite and >= 0 (default: the checkpoint's)",
    )
    parser.add_argument(
        "--compile-attention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the attention with one torch.compile kernel: faster for many images, after a "
        "one-off compilation (default: the checkpoint's setting, normally off)",
    )
    return parser


def _setup(args: argparse.Namespace) -> AppJob:
    options = {
        "beam_size": args.beam_size,
        "max_len": args.max_len,
        "length_penalty": args.length_penalty,
        "compile_attention": args.compile_attention,
    }
    CaptioningPipeline.check_options(options)
    files = expand_inputs(args.inputs, IMAGE_EXTENSIONS)
    return AppJob(CaptioningPipeline.from_checkpoint(args.ckpt, args.device), files, options)


def _format_text(record: dict[str, Any]) -> str:
    return f"{record['file']}\t{record['caption']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``multiattn caption``."""
    return run_app(argv, build_parser(), _setup, _format_text)


if __name__ == "__main__":
    raise SystemExit(main())
