"""``multiattn classify IMG... --ckpt C [--overlay-dir D] [--json]``: classify images and show
where the spatial transformer looked.

A thin layer over :class:`multiattn.tasks.stn.pipeline.ClassifierPipeline` (what ``multiattn.load`` returns
for a classifier checkpoint): ``--json`` prints each result's ``to_dict()``:
``{"file", "label", "probabilities": {class: p}, "corners": [[x, y] x4] | null, "theta"}`` (+
``"overlay"`` when ``--overlay-dir`` wrote ``<stem>_stn.png``). A file that is not an image is
reported on stderr as one line naming it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from multiattn.apps import AppJob, app_parser, expand_inputs, run_app
from multiattn.tasks.stn.pipeline import ClassifierPipeline
from multiattn.tasks.stn.sources.images import IMAGE_EXTENSIONS

__all__ = ["main", "classify_files", "format_text"]


def classify_files(
    system: Any,
    files: Sequence[Path],
    *,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    invert: bool | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of image files classified by a loaded :class:`~multiattn.tasks.stn.system.STNSystem`
    (``{"file", "error"}`` for a file that could not be read); the pipeline with a model in hand."""
    pipeline = ClassifierPipeline(system, torch.device(device), invert=invert)
    for result in pipeline.run(files, batch_size=batch_size):
        yield result.to_dict()


def format_text(record: dict[str, Any]) -> str:
    """``file: label (p)`` plus the region's corners when there is one."""
    p = record["probabilities"][record["label"]]
    text = f"{record['file']}: {record['label']} ({p:.3f})"
    if record.get("corners") is not None:
        text += "  region " + " ".join(f"({x:.1f},{y:.1f})" for x, y in record["corners"])
    return text


def _setup(args: argparse.Namespace) -> AppJob:
    options = {"invert": {"auto": None, "always": True, "never": False}[args.invert]}
    ClassifierPipeline.check_options(options)
    files = expand_inputs(args.inputs, IMAGE_EXTENSIONS)
    pipeline = ClassifierPipeline.from_checkpoint(args.ckpt, args.device)
    return AppJob(pipeline, files, options, overlay_suffix="_stn")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``multiattn classify``."""
    parser = app_parser(
        "classify",
        "Classify images with a spatial transformer checkpoint and report the region it sampled.",
        inputs_help="image files (any format Pillow reads) or folders of them",
    )
    parser.add_argument(
        "--invert",
        choices=("auto", "always", "never"),
        default="auto",
        help="invert to light-on-dark: auto (when the model was trained that way and the image "
        "border is bright), always or never",
    )
    return run_app(argv, parser, _setup, format_text)
