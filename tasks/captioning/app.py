"""``multiattn caption IMG... --ckpt C [--beam-size K] [--overlay-dir D] [--json]``.

Captions image files with a trained checkpoint (no config needed: the vocabulary, image size and
model settings travel inside it). Prints one line per image (``<file>\\t<caption>``) or, with
``--json``, one object per image:

- ``file``: the input path;
- ``caption``: the caption;
- ``words``: its words;
- ``score``: the beam search score (length-normalised log-probability);
- ``attention_peaks``: per word, the ``[x, y]`` pixel where its upsampled attention peaks;
- ``overlay``: the overlay PNG path (only with ``--overlay-dir``).

With ``--overlay-dir D`` it writes ``D/<image stem>.png``: the image, then one panel per word with
that word's attention upsampled over it. A file that cannot be read is reported on stderr as one
line naming it; the others are still captioned.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from multiattn.apps import app_parser, expand_inputs, resolve_device, run_app
from multiattn.checkpoint import load_system
from multiattn.io import UserError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = app_parser(
        "caption", "Caption images with a trained captioning checkpoint.", "image files or folders"
    )
    parser.add_argument(
        "--beam-size", type=int, default=None, help="beam size (default: the checkpoint's; 1 = greedy)"
    )
    parser.add_argument(
        "--max-len", type=int, default=None, help="longest caption (default: the checkpoint's)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=None,
        help="length normalisation exponent (default: the checkpoint's)",
    )
    parser.add_argument(
        "--compile-attention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the attention with one torch.compile kernel: faster for many images, after a "
        "one-off compilation (default: the checkpoint's setting, normally off)",
    )
    return parser


def _peaks(attention: torch.Tensor | None, size: int) -> list[list[int]]:
    """Per word, the ``[x, y]`` pixel of the attention maximum after bilinear upsampling."""
    if attention is None or attention.shape[0] == 0:
        return []
    maps = F.interpolate(attention.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    flat = maps.flatten(1).argmax(1)  # (T,) flat pixel index
    return [[int(i % size), int(i // size)] for i in flat]


def _predict(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    from tasks.captioning.images import IMAGE_EXTENSIONS, load_image
    from tasks.captioning.system import CaptioningSystem

    if args.beam_size is not None and args.beam_size < 1:
        raise UserError(f"--beam-size: expected at least 1, received {args.beam_size}")
    device = resolve_device(args.device)
    # The backbone's weights are in the checkpoint: never download or read a weights file again.
    system = load_system(
        CaptioningSystem, args.ckpt, map_location=device, encoder_pretrained=False, encoder_weights_file=None
    )
    size = int(system.hparams.input_size or 96)
    overrides = {
        key: value
        for key, value in (
            ("beam_size", args.beam_size),
            ("max_len", args.max_len),
            ("length_penalty", args.length_penalty),
            ("compile_attention", args.compile_attention),
        )
        if value is not None
    }
    files = expand_inputs(args.inputs, IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"{' '.join(args.inputs)}: no image files found")
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        loaded: list[tuple[Path, torch.Tensor, Any]] = []
        for path in chunk:
            try:
                tensor, picture = load_image(path, size)
            except UserError as error:
                yield {"file": str(path), "error": str(error).removeprefix(f"{path}: ")}
                continue
            loaded.append((path, tensor, picture))
        if not loaded:
            continue
        images = torch.stack([t for _, t, _ in loaded]).to(device)  # (B, 3, S, S)
        captions = system.generate(images, **overrides)
        for (path, _, picture), caption in zip(loaded, captions):
            words = system.vocab.decode_words(caption.tokens)
            record: dict[str, Any] = {
                "file": str(path),
                "caption": " ".join(words),
                "words": words,
                "score": round(caption.score, 4),
                "attention_peaks": _peaks(caption.attention, size),
            }
            if args.overlay_dir is not None:
                from multiattn.viz import save_figure
                from tasks.captioning.overlay import caption_figure

                figure = caption_figure(picture, words, caption.attention)
                target = Path(args.overlay_dir) / f"{path.stem}.png"
                save_figure(figure, target)
                figure.clear()
                record["overlay"] = str(target)
            yield record


def _format_text(record: dict[str, Any]) -> str:
    return f"{record['file']}\t{record['caption']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``multiattn caption``."""
    with torch.inference_mode():
        return run_app(argv, build_parser(), _predict, _format_text)


if __name__ == "__main__":
    raise SystemExit(main())
