"""The classifier's section of ``multiattn report``: the input with the sampled region, the warped
image, and the class probabilities (Jaderberg et al. 2015's "where did the transformer look").

Split mode: the first ``limit`` images of the split of the data the checkpoint was trained on
(rebuilt from its stored datamodule hyper-parameters; the embedded cluttered / distorted digits by
default), their true labels and, where the data has them, the digits' true boxes, so each item
gets the IoU of the sampled region with the box and the section gets accuracy, mean IoU and the
share of images with IoU > 0.5. Inputs mode: the user's images through
:func:`multiattn.tasks.stn.app.classify_files` (converted exactly as ``multiattn classify`` converts them).

Assets: ``<n>.png`` the input (small digits enlarged by an integer factor, big photos shrunk) and
``<n>_warped.png`` what the classifier saw. Corners are in the asset's pixels (pixel centres at
integers), the coordinates the explorer's SVG overlay uses.

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` input size, ``h, w`` warped size, ``K`` classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from multiattn.checkpoint import load_system
from multiattn.imageio import SCALE
from multiattn.tasks.common.report import (
    SectionRequest,
    build_from,
    datamodule_from_checkpoint,
    display_scale,
    setup_datamodule,
    to_picture,
    write_png,
)
from multiattn.tasks.stn.data import STNDataModule, collate_batch
from multiattn.tasks.stn.system import STNSystem

__all__ = ["build_section", "scale_corners"]


def scale_corners(corners: Any, scale: float) -> list[list[float]]:
    """Map ``(4, 2)`` pixel-centre ``(x, y)`` corners onto an image resized by ``scale``."""
    array = np.asarray(corners, dtype=np.float64)
    return [[round(float(x), 2), round(float(y), 2)] for x, y in (array + 0.5) * scale - 0.5]


def _item(
    request: SectionRequest,
    number: int,
    file: str,
    picture: np.ndarray,
    warped: np.ndarray,
    corners: Any,
    label: str,
    probabilities: dict[str, float],
) -> dict[str, Any]:
    picture = to_picture(picture)
    height, width = picture.shape[:2]
    scale = display_scale(int(width), int(height))
    image_path = request.assets / f"{number:04d}.png"
    warped_path = request.assets / f"{number:04d}_warped.png"
    shown_width, shown_height = write_png(picture, image_path, scale=scale)
    write_png(warped, warped_path)
    if corners is None:  # a checkpoint trained without the transformer: the whole image
        corners = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    return {
        "file": file,
        "image": request.relative(image_path),
        "warped": request.relative(warped_path),
        "width": shown_width,
        "height": shown_height,
        "corners": scale_corners(corners, shown_width / width),
        "label": label,
        "probabilities": {name: round(float(p), 4) for name, p in probabilities.items()},
    }


def _split_section(request: SectionRequest, system: STNSystem) -> tuple[list[dict[str, Any]], dict, str]:
    from multiattn.stn import region_iou

    datamodule, where = datamodule_from_checkpoint(
        request.checkpoint, __package__, STNDataModule, request.data_dir
    )
    setup_datamodule(datamodule, where, request.ckpt)
    dataset = datamodule.datasets[request.split]
    count = min(request.limit, len(dataset))
    names = system.class_names
    items: list[dict[str, Any]] = []
    correct, ious = 0, []
    step = request.batch_size
    for start in request.progress(range(0, count, step), count, size=lambda s: min(step, count - s)):
        batch = collate_batch([dataset[i] for i in range(start, min(count, start + request.batch_size))])
        outputs = system.predict_step(batch.images.to(request.device))
        iou = None
        if outputs["corners"] is not None and batch.boxes is not None:
            iou = region_iou(outputs["corners"].cpu(), batch.boxes)  # (B,)
        for row in range(len(batch)):
            label, truth = int(outputs["label"][row]), int(batch.labels[row])
            probabilities = dict(zip(names, outputs["probabilities"][row].cpu().tolist()))
            item = _item(
                request,
                start + row,
                f"{request.split}/{start + row:05d}",
                batch.images[row].numpy(),  # (C, H, W)
                outputs["warped"][row].cpu().numpy(),  # (C, h, w)
                None if outputs["corners"] is None else outputs["corners"][row].cpu(),
                names[label],
                probabilities,
            )
            item["true_label"] = names[truth]
            correct += int(label == truth)
            if iou is not None:
                item["iou"] = round(float(iou[row]), 4)
                ious.append(float(iou[row]))
            items.append(item)
    metrics: dict[str, Any] = {"accuracy": correct / max(len(items), 1)}
    if ious:
        metrics["mean IoU"] = float(np.mean(ious))
        metrics["IoU>0.5"] = float(np.mean([v > 0.5 for v in ious]))
    data = f"{where}, {request.split} split: first {len(items)} of {len(dataset)}"
    return items, metrics, data


def _inputs_section(request: SectionRequest, system: STNSystem) -> tuple[list[dict[str, Any]], dict, str]:
    from multiattn.tasks.stn.app import classify_files
    from multiattn.tasks.stn.sources.images import image_to_array, read_image

    items: list[dict[str, Any]] = []
    records = classify_files(system, request.inputs, batch_size=request.batch_size, device=request.device)
    for record in request.progress(records, len(request.inputs or [])):
        if "error" in record:
            request.errors.append((record["file"], record["error"]))
            continue
        image = read_image(record["file"], (160, 160))  # >= 320 px a side: the page shows at most that
        picture = image_to_array(image, channels=system.hparams.in_channels)  # (H, W[, C])
        corners = record["corners"]
        if corners is not None:  # the user's pixels -> the decoded picture's
            scale = image.info[SCALE]
            corners = [[(x + 0.5) / scale - 0.5, (y + 0.5) / scale - 0.5] for x, y in corners]
        warped = _warped(system, record["file"], request)
        items.append(
            _item(
                request,
                len(items),
                record["file"],
                picture,
                warped,
                corners,
                record["label"],
                record["probabilities"],
            )
        )
    return items, {}, f"{len(items)} image file(s) given with --inputs"


def _warped(system: STNSystem, file: str, request: SectionRequest) -> np.ndarray:
    """The warped image of one file, converted exactly as ``classify_files`` converts it."""
    from multiattn.tasks.stn.sources.images import prepare_image, read_image

    hp = system.hparams
    tensor, _ = prepare_image(
        read_image(file, tuple(int(side) for side in hp.input_size)),
        channels=hp.in_channels,
        size=(int(hp.input_size[0]), int(hp.input_size[1])),
        light_on_dark=hp.light_on_dark,
        invert=None,
    )
    outputs = system.predict_step(tensor[None].to(request.device))  # (1, C, H, W)
    return outputs["warped"][0].cpu().numpy()


@torch.inference_mode()
def build_section(request: SectionRequest) -> dict[str, Any]:
    """The report section (``task: "stn"``) of one classifier checkpoint."""
    system = load_system(STNSystem, request.ckpt, map_location=request.device, log_overlays=False)
    return build_from(request, system, _split_section, _inputs_section)
