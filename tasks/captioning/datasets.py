"""Caption datasets (generated scenes and real image files) and the batch they collate into.

One dataset class, :class:`ImageCaptionDataset`, serves every real format (the readers in
:mod:`multiattn.tasks.captioning.sources.formats` turn COCO, Karpathy and Flickr8k files into the same
records). :class:`SceneCaptionDataset` serves the embedded scenes, which also carry object boxes
and the word -> object alignment used to score attention.

A corrupt or unreadable image never stops an epoch: the dataset warns once naming the file,
counts it, and returns ``None``; :func:`collate_captions` drops such items.

Shape legend: ``B`` batch, ``S`` image side, ``L`` padded token length (``<bos>`` .. ``<eos>``).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from multiattn.io import UserError
from multiattn.tasks.captioning.images import array_to_tensor, load_image
from multiattn.tasks.captioning.sources.formats import CaptionRecord
from multiattn.tasks.captioning.vocab import Vocabulary

__all__ = ["CaptionSample", "CaptionBatch", "collate_captions", "SceneCaptionDataset", "ImageCaptionDataset"]

log = logging.getLogger(__name__)


@dataclass
class CaptionSample:
    """One image with the caption it is trained on and every reference it is scored against."""

    image: Tensor  # (3, S, S)
    tokens: list[int]  # <bos> ... <eos>
    references: list[str]
    image_id: Any
    objects: list[dict[str, Any]] | None = None


@dataclass
class CaptionBatch:
    """A collated batch.

    Attributes:
        images: ``(B, 3, S, S)`` normalised images.
        tokens: ``(B, L)`` ``<bos> w1 .. wn <eos>`` padded with ``pad_id``.
        lengths: ``(B,)`` valid tokens per row, ``<bos>`` and ``<eos>`` included.
        references: per image, every reference caption (raw text), for the metrics.
        image_ids: per image, the dataset's id.
        objects: per image, the scene's objects (``box``, ``colour``, ``shape``, ``size``), or
            ``None`` for real data (no boxes to score attention against).
    """

    images: Tensor
    tokens: Tensor
    lengths: Tensor
    references: list[list[str]]
    image_ids: list[Any]
    objects: list[list[dict[str, Any]]] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def pin_memory(self) -> CaptionBatch:
        """Page-locked copies (``DataLoader(pin_memory=True)``): host-to-GPU copies run asynchronously."""
        return dataclasses.replace(
            self,
            images=self.images.pin_memory(),
            tokens=self.tokens.pin_memory(),
            lengths=self.lengths.pin_memory(),
        )


def collate_captions(samples: Sequence[CaptionSample | None], *, pad_id: int = 0) -> CaptionBatch | None:
    """Stack samples into a :class:`CaptionBatch`, dropping ``None`` (unreadable) items.

    Returns ``None`` when every item of the batch was unreadable; the system skips such a batch.
    """
    kept = [s for s in samples if s is not None]
    if not kept:
        return None
    lengths = torch.tensor([len(s.tokens) for s in kept], dtype=torch.long)
    tokens = torch.full((len(kept), int(lengths.max())), pad_id, dtype=torch.long)  # (B, L)
    for row, sample in enumerate(kept):
        tokens[row, : len(sample.tokens)] = torch.tensor(sample.tokens, dtype=torch.long)
    objects = [s.objects for s in kept] if all(s.objects is not None for s in kept) else None
    return CaptionBatch(
        images=torch.stack([s.image for s in kept]),  # (B, 3, S, S)
        tokens=tokens,
        lengths=lengths,
        references=[s.references for s in kept],
        image_ids=[s.image_id for s in kept],
        objects=objects,
    )


class SceneCaptionDataset(Dataset):
    """Generated scenes: uint8 images ``(N, S, S, 3)`` and their annotations.

    Args:
        images: the (memory-mapped) image array.
        annotations: one dict per image (see :func:`multiattn.tasks.captioning.sources.scenes.generate_split`).
        vocab: encodes the training caption.
        max_words: longer captions are cut (the scenes' grammar stays far below the default).
    """

    def __init__(
        self,
        images: np.ndarray,
        annotations: list[dict[str, Any]],
        vocab: Vocabulary,
        *,
        max_words: int = 30,
    ) -> None:
        if len(images) != len(annotations):
            raise ValueError(f"images: expected {len(annotations)} images, received {len(images)}")
        self.images = images
        self.annotations = annotations
        self.vocab = vocab
        self.max_words = max_words

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> CaptionSample:
        ann = self.annotations[index]
        captions = ann["captions"]
        return CaptionSample(
            image=array_to_tensor(np.asarray(self.images[index])),
            tokens=self.vocab.encode(captions[0], max_len=self.max_words),
            references=list(captions),
            image_id=index,
            objects=ann["objects"],
        )


class ImageCaptionDataset(Dataset):
    """Real image files with their references (any format, through :class:`CaptionRecord`).

    Args:
        records: images of one split.
        vocab: encodes the training caption.
        image_size: images are resized to ``image_size`` square.
        max_words: longer captions are cut.
    """

    def __init__(
        self,
        records: Sequence[CaptionRecord],
        vocab: Vocabulary,
        *,
        image_size: int,
        max_words: int = 30,
    ) -> None:
        self.records = list(records)
        self.vocab = vocab
        self.image_size = image_size
        self.max_words = max_words
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> CaptionSample | None:
        record = self.records[index]
        try:
            image, _ = load_image(record.image_path, self.image_size)
        except UserError as error:
            if record.image_path not in self.skipped:
                self.skipped.add(record.image_path)
                warnings.warn(
                    f"skipping unreadable image ({len(self.skipped)} so far): {error}", stacklevel=2
                )
            return None
        return CaptionSample(
            image=image,
            tokens=self.vocab.encode(record.references[0], max_len=self.max_words),
            references=list(record.references),
            image_id=record.image_id,
        )


def filter_readable(
    records: Sequence[CaptionRecord], *, desc: str = "checking images"
) -> tuple[list[CaptionRecord], list[str]]:
    """Keep the records whose image opens and whose header parses (PIL ``verify``); list the others.

    Cheap (no decoding of pixel data), so a dataset can be checked up front instead of failing
    mid-epoch; :class:`ImageCaptionDataset` still skips an image that passes this but fails to decode.
    """
    from PIL import Image
    from tqdm import tqdm

    kept, bad = [], []
    for record in tqdm(records, desc=desc, unit="img", leave=False, mininterval=2.0):
        try:
            with Image.open(record.image_path) as img:
                img.verify()
            kept.append(record)
        except Exception:
            bad.append(record.image_path)
    for path in bad[:5]:
        log.warning("skipping unreadable image: %s", path)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s), first: {bad[0]}", stacklevel=2)
    return kept, bad
