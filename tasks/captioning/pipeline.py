"""The captioning pipeline: ``multiattn.load(<captioning checkpoint>)`` and ``multiattn caption``.

No config is needed: the vocabulary, image size and model settings travel inside the checkpoint,
and the backbone's weights too (nothing is downloaded). Each image is read as RGB and resized to
the model's square input exactly as in training (:mod:`multiattn.tasks.captioning.images`).

A result's record (``to_dict()``, the ``--json`` line of ``caption``):

- ``file``: the input path (``None`` for an in-memory image);
- ``caption``: the caption; ``words``: its words;
- ``score``: the beam search score (length-normalised log-probability);
- ``attention_peaks``: per word, the ``[x, y]`` pixel (of the model's ``S x S`` input) where its
  upsampled attention peaks;
- ``overlay``: the overlay PNG path (once written).

``result.attention`` holds ``words`` and ``maps``: ``(T, h, w)`` one attention grid per word over
the image's feature map (``None`` for an empty caption). Options: ``beam_size`` (>= 1; 1 =
greedy), ``max_len`` (>= 1), ``length_penalty`` (>= 0), ``compile_attention`` (bool); ``None``
keeps the checkpoint's setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from multiattn.checkpoint import load_system
from multiattn.pipeline import ChoiceOption, NumberOption, Pipeline, Result, image_input

__all__ = ["CaptioningPipeline", "CaptionResult", "attention_peaks"]


def attention_peaks(attention: torch.Tensor | None, size: int) -> list[list[int]]:
    """Per word, the ``[x, y]`` pixel of the attention maximum after bilinear upsampling."""
    if attention is None or attention.shape[0] == 0:
        return []
    maps = F.interpolate(attention.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    flat = maps.flatten(1).argmax(1)  # (T,) flat pixel index
    return [[int(i % size), int(i // size)] for i in flat]


class CaptionResult(Result):
    """A captioned image; :meth:`overlay` draws each word's attention over the image."""

    def __init__(self, record: dict[str, Any], attention: dict[str, Any], picture: np.ndarray):
        super().__init__(record, attention)
        self.picture = picture  # (S, S, 3) uint8: the model's input as drawn

    def overlay(self):
        from multiattn.tasks.captioning.overlay import caption_figure

        return caption_figure(self.picture, self.attention["words"], self.attention["maps"])


class _Encode(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.encoder(images),)


class CaptioningPipeline(Pipeline):
    """Image captioning with per-word attention (:class:`multiattn.tasks.captioning.system.CaptioningSystem`)."""

    task = "captioning"
    options = {
        "beam_size": NumberOption(integer=True, low=1),
        "max_len": NumberOption(integer=True, low=1),
        "length_penalty": NumberOption(low=0.0),
        "compile_attention": ChoiceOption((True, False)),
    }

    @classmethod
    def build_system(cls, path: Path, device: torch.device):
        from multiattn.tasks.captioning.system import CaptioningSystem

        # The backbone's weights are in the checkpoint: never download or read a weights file again.
        return load_system(
            CaptioningSystem, path, map_location=device, encoder_pretrained=False, encoder_weights_file=None
        )

    @property
    def image_size(self) -> int:
        return int(self.system.hparams.input_size or 96)

    def export_spec(self):
        """The image encoder: normalised images ``(B, 3, S, S)`` -> the feature grid ``(B, C, h, w)``."""
        from multiattn.export import ExportSpec

        size = self.image_size
        generator = torch.Generator().manual_seed(0)
        example, check = (torch.randn(n, 3, size, size, generator=generator) for n in (2, 3))
        return ExportSpec(
            module=_Encode(self.system.model.encoder.cpu()).eval(),
            example=(example,),
            check=(check,),
            input_names=["images"],
            output_names=["features"],
            dynamic={"images": {0: "batch"}},
            description=f"captioning encoder: images (B, 3, {size}, {size}) normalised with the ImageNet "
            "mean and std -> features (B, C, h, w)",
        )

    def prepare(self, item: Any, name: str | None, settings: dict[str, Any]) -> Any:
        from multiattn.tasks.captioning.images import image_to_input, load_image

        image = image_input(item)
        if isinstance(image, Path):
            tensor, picture = load_image(image, self.image_size)
        else:
            tensor, picture = image_to_input(image, self.image_size)
        return name, tensor, picture

    def forward(self, prepared: list[Any], settings: dict[str, Any]) -> list[Result]:
        overrides = {key: value for key, value in settings.items() if value is not None}
        images = torch.stack([tensor for _, tensor, _ in prepared]).to(self.device)  # (B, 3, S, S)
        with torch.inference_mode():
            captions = self.system.generate(images, **overrides)
        results: list[Result] = []
        for (name, _, picture), caption in zip(prepared, captions):
            words = self.system.vocab.decode_words(caption.tokens)
            maps = None if caption.attention is None else caption.attention.float().cpu()
            record: dict[str, Any] = {
                "file": name,
                "caption": " ".join(words),
                "words": words,
                "score": round(caption.score, 4),
                "attention_peaks": attention_peaks(maps, self.image_size),
            }
            results.append(CaptionResult(record, {"words": words, "maps": maps}, picture))
        return results


PIPELINE = CaptioningPipeline  # named by the task's declaration (tasks/captioning/task.py)
