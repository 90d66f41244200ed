"""The captioning section of ``multiattn report``: each image with its generated caption and, per
word, the soft attention over the feature grid (Show, Attend and Tell, Xu et al. 2015, Fig. 2-3).

Split mode: the first ``limit`` images of the split of the data the checkpoint was trained on
(rebuilt from its stored datamodule hyper-parameters; the embedded scenes by default), with all
their reference captions. Per image: BLEU-1 / BLEU-4 / ROUGE-L against its references and, on the
scenes (objects with boxes), whether every named colour-shape pair is in the image and the
attention scores of :class:`multiattn.tasks.captioning.scoring.SceneScorer`. The section's metrics are the
corpus scores over the report's images (:func:`multiattn.metrics.captioning.caption_metrics`:
BLEU-1..4, METEOR when Java is present, ROUGE-L, CIDEr-D) plus the scene scores. Inputs mode:
the user's images, read and resized exactly as ``multiattn caption`` reads them.

Assets: ``<n>.png``, the image the model saw (``S x S``), enlarged by an integer factor for the
page. ``attention`` holds one row of ``H*W`` weights per word (3 significant digits; weights below
1/1000 of the map's maximum written as 0, which the page draws identically), ``grid``
is ``[H, W]``.

Shape legend: ``B`` batch, ``S`` image side, ``T`` caption words, ``H, W`` attention grid.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiattn.checkpoint import load_system
from multiattn.io import UserError
from multiattn.metrics.captioning import caption_metrics
from multiattn.tasks.captioning.data import SceneCaptionData
from multiattn.tasks.captioning.images import denormalize, load_image
from multiattn.tasks.captioning.system import CaptioningSystem
from multiattn.tasks.common.report import (
    SectionRequest,
    build_from,
    datamodule_from_checkpoint,
    display_scale,
    setup_datamodule,
    write_png,
)

__all__ = ["build_section", "attention_rows"]

# Corpus metric names as the page shows them.
METRIC_NAMES = {
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider_d": "CIDEr-D",
    "pairs_correct": "pairs correct",
    "objects_exact": "objects exact",
    "attention_mass": "attention in box",
    "pointing_game": "pointing game",
}


def attention_rows(attention: torch.Tensor | None, count: int) -> tuple[list[int], list[list[float]]]:
    """``(T, H, W)`` maps -> ``([H, W], [[H*W weights] per word])`` for the first ``count`` words."""
    if attention is None or attention.shape[0] == 0:
        return [1, 1], [[0.0] for _ in range(count)]
    height, width = int(attention.shape[1]), int(attention.shape[2])
    flat = attention[:count].float().reshape(-1, height * width)  # (T, H, W) -> (T, H*W)
    # Three significant digits: a near-uniform map (all weights ~1/(H*W)) keeps its small
    # differences, which the page stretches to the full colour map (it divides by the maximum).
    # Weights below 1/1000 of their map's maximum are written as 0: the page draws them in the
    # same colour (8-bit), and a trained, peaked map is mostly such cells ("1.23e-05" x 144).
    floors = flat.max(dim=1).values * 1e-3  # (T,)
    rows = [
        [0 if v < floor else float(f"{v:.3g}") for v in row.tolist()]
        for row, floor in zip(flat, floors.tolist())
    ]
    rows += [[0.0] * (height * width) for _ in range(count - len(rows))]  # words without a map
    return [height, width], rows


def _item_scores(references: list[str], words: list[str], objects: list[dict] | None, attention, size: int):
    """Per-image scores: BLEU-1/4 and ROUGE-L (simple tokenizer: no JVM per image), scene scores."""
    from multiattn.tasks.captioning.scoring import SceneScorer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = caption_metrics([references], [" ".join(words)], use_java=False, meteor=False)
    out = {"BLEU-1": round(scores["bleu_1"], 4), "BLEU-4": round(scores["bleu_4"], 4)}
    out["ROUGE-L"] = round(scores["rouge_l"], 4)
    if objects is not None:
        scorer = SceneScorer((size, size))
        scorer.add(words, attention, objects)
        scene = scorer.compute()
        out["pairs correct"] = int(scene["pairs_correct"])
        if scene["object_words"] > 0:
            out["pointing game"] = round(scene["pointing_game"], 4)
            out["attention in box"] = round(scene["attention_mass"], 4)
    return out


def _item(
    request: SectionRequest, number: int, file: str, picture: np.ndarray, words: list[str], attention
) -> dict[str, Any]:
    size = picture.shape[0]
    path = request.assets / f"{number:04d}.png"
    width, height = write_png(picture, path, scale=display_scale(picture.shape[1], size))
    grid, rows = attention_rows(attention, len(words))
    return {
        "file": file,
        "image": request.relative(path),
        "width": width,
        "height": height,
        "words": words,
        "grid": grid,
        "attention": rows,
        "references": [],
    }


def _split_section(request: SectionRequest, system: CaptioningSystem):
    from multiattn.tasks.captioning.datasets import collate_captions
    from multiattn.tasks.captioning.scoring import SceneScorer

    datamodule, where = datamodule_from_checkpoint(
        request.checkpoint, __package__, SceneCaptionData, request.data_dir
    )
    datamodule.vocab = system.vocab  # ids mean what the model learned; no vocabulary rebuilt
    setup_datamodule(datamodule, where, request.ckpt)
    dataset = datamodule.datasets[request.split]
    count = min(request.limit, len(dataset))
    size = int(system.hparams.input_size or 96)
    scene = SceneScorer((size, size))
    items, references, hypotheses = [], [], []
    step = request.batch_size
    for start in request.progress(range(0, count, step), count, size=lambda s: min(step, count - s)):
        batch = collate_captions([dataset[i] for i in range(start, min(count, start + request.batch_size))])
        if batch is None:
            continue
        captions = system.generate(batch.images.to(request.device))
        pictures = denormalize(batch.images).numpy()  # (B, S, S, 3) uint8
        for row, caption in enumerate(captions):
            words = system.vocab.decode_words(caption.tokens)
            objects = None if batch.objects is None else batch.objects[row]
            item = _item(
                request,
                start + row,
                f"{request.split}/{batch.image_ids[row]}",
                pictures[row],
                words,
                caption.attention,
            )
            item["references"] = list(batch.references[row])
            item["scores"] = _item_scores(item["references"], words, objects, caption.attention, size)
            if objects is not None:
                scene.add(words, caption.attention, objects)
            references.append(item["references"])
            hypotheses.append(" ".join(words))
            items.append(item)
    metrics: dict[str, Any] = {}
    if items:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "java not found": the page says which metrics exist
            corpus = caption_metrics(references, hypotheses, use_java=system.hparams.use_java)
        if scene.images:
            corpus.update(scene.compute())
        metrics.update({METRIC_NAMES[k]: v for k, v in corpus.items() if k in METRIC_NAMES})
    data = f"{where}, {request.split} split: first {len(items)} of {len(dataset)}"
    return items, metrics, data


def _inputs_section(request: SectionRequest, system: CaptioningSystem):
    size = int(system.hparams.input_size or 96)
    items: list[dict[str, Any]] = []
    files: list[Path] = list(request.inputs or [])
    step = request.batch_size
    for start in request.progress(
        range(0, len(files), step), len(files), size=lambda s: min(step, len(files) - s)
    ):
        loaded = []
        for path in files[start : start + request.batch_size]:
            try:
                tensor, picture = load_image(path, size)
            except UserError as err:
                request.errors.append((str(path), str(err).removeprefix(f"{path}: ")))
                continue
            loaded.append((path, tensor, picture))
        if not loaded:
            continue
        captions = system.generate(torch.stack([t for _, t, _ in loaded]).to(request.device))  # (B, 3, S, S)
        for (path, _, picture), caption in zip(loaded, captions):
            words = system.vocab.decode_words(caption.tokens)
            items.append(_item(request, len(items), str(path), picture, words, caption.attention))
    return items, {}, f"{len(items)} image file(s) given with --inputs"


@torch.inference_mode()
def build_section(request: SectionRequest) -> dict[str, Any]:
    """The report section (``task: "captioning"``) of one captioning checkpoint."""
    system = load_system(
        CaptioningSystem,
        request.ckpt,
        map_location=request.device,
        encoder_pretrained=False,
        encoder_weights_file=None,
        log_overlays=False,
    )
    return build_from(request, system, _split_section, _inputs_section)
