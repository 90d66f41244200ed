"""``multiattn classify IMG... --ckpt C [--overlay-dir D] [--json]``: classify images and show
where the spatial transformer looked.

Each image is converted exactly as in training (:func:`tasks.stn.sources.images.prepare_image`:
any mode and size, letterboxed to the model's input), classified, and the sampled region's four
corners are mapped back through the letterbox into the *user's* pixel coordinates (pixel centres
at integers, ``x`` right, ``y`` down). ``--json`` prints one object per file:
``{"file", "label", "probabilities": {class: p}, "corners": [[x, y] x4] | null, "theta"}`` (+
``"overlay"`` when ``--overlay-dir`` wrote one); ``corners`` is ``null`` for a checkpoint trained
without the transformer. A file that is not an image is reported on stderr as one line naming it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from multiattn.apps import app_parser, expand_inputs, resolve_device, run_app
from multiattn.checkpoint import load_system
from multiattn.io import UserError
from multiattn.viz import save_figure
from tasks.stn.overlay import region_figure
from tasks.stn.sources.images import IMAGE_EXTENSIONS, image_to_array, prepare_image, read_image
from tasks.stn.system import STNSystem

__all__ = ["main", "classify_files", "format_text"]


def _error_text(err: UserError, path: Path) -> str:
    # run_app prefixes the file name itself.
    return str(err).removeprefix(f"{path}: ")


def _overlay_path(folder: Path, path: Path, used: set[str]) -> Path:
    stem, index = f"{path.stem}_stn", 1
    name = stem
    while name in used:
        index += 1
        name = f"{stem}_{index}"
    used.add(name)
    return folder / f"{name}.png"


def classify_files(
    system: STNSystem,
    files: Sequence[Path],
    *,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    overlay_dir: Path | None = None,
    invert: bool | None = None,
) -> Iterator[dict[str, Any]]:
    """Classify image files with a loaded system; one record per file (or ``{"file", "error"}``).

    Args:
        system: an :class:`STNSystem` in eval mode.
        files: image paths.
        batch_size: images per forward pass.
        device: where the system lives.
        overlay_dir: write ``<stem>_stn.png`` (input with the region, beside the warped image).
        invert: force / forbid inverting to light-on-dark; ``None`` = automatic.
    """
    hp = system.hparams
    names = system.class_names
    size = (int(hp.input_size[0]), int(hp.input_size[1]))
    used: set[str] = set()
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        ready, pending_errors = [], {}
        for path in chunk:
            try:
                image = read_image(path, size)
                tensor, letterbox = prepare_image(
                    image, channels=hp.in_channels, size=size, light_on_dark=hp.light_on_dark, invert=invert
                )
                ready.append((path, image, tensor, letterbox))
            except UserError as err:
                pending_errors[path] = _error_text(err, path)
        outputs: dict[str, Any] = {}
        if ready:
            images = torch.stack([item[2] for item in ready]).to(device)  # (B, C, H, W)
            with torch.inference_mode():
                outputs = system.predict_step(images)
        position = 0
        for path in chunk:
            if path in pending_errors:
                yield {"file": str(path), "error": pending_errors[path]}
                continue
            _, image, tensor, letterbox = ready[position]
            probabilities = outputs["probabilities"][position].cpu()
            label = int(outputs["label"][position])
            record: dict[str, Any] = {
                "file": str(path),
                "label": names[label],
                "probabilities": {name: round(float(p), 6) for name, p in zip(names, probabilities)},
                "corners": None,
                "theta": None,
            }
            corners = None
            if outputs["corners"] is not None:
                corners = letterbox.to_original(outputs["corners"][position].cpu())  # (4, 2)
                record["corners"] = [[round(float(x), 3), round(float(y), 3)] for x, y in corners]
                record["theta"] = outputs["theta"][position].cpu().tolist()
            if overlay_dir is not None:
                picture = image_to_array(image, channels=hp.in_channels)  # (h, w, C) upright, as decoded
                title = f"{names[label]} ({float(probabilities[label]):.2f})"
                warped = outputs["warped"][position].cpu().numpy()
                figure = region_figure(
                    [picture],
                    [
                        None
                        if corners is None
                        else letterbox.to_decoded(outputs["corners"][position].cpu()).numpy()
                    ],
                    [warped],
                    [title],
                    pairs_per_row=1,
                    panel_inches=2.4,
                )
                target = _overlay_path(Path(overlay_dir), path, used)
                save_figure(figure, target)
                figure.clear()
                record["overlay"] = str(target)
            position += 1
            yield record


def format_text(record: dict[str, Any]) -> str:
    """``file: label (p)`` plus the region's corners when there is one."""
    p = record["probabilities"][record["label"]]
    text = f"{record['file']}: {record['label']} ({p:.3f})"
    if record.get("corners") is not None:
        text += "  region " + " ".join(f"({x:.1f},{y:.1f})" for x, y in record["corners"])
    return text


def _predict(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    device = resolve_device(args.device)
    system = load_system(STNSystem, args.ckpt, map_location=device, log_overlays=False)
    files = expand_inputs(args.inputs, IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"no image files found in {', '.join(args.inputs)}")
    invert = {"auto": None, "always": True, "never": False}[args.invert]
    yield from classify_files(
        system, files, batch_size=args.batch_size, device=device, overlay_dir=args.overlay_dir, invert=invert
    )


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
    return run_app(argv, parser, _predict, format_text)
