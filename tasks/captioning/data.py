"""Lightning data modules of the captioning task: embedded scenes, and real caption datasets.

- :class:`SceneCaptionData` (default): generated scenes (:mod:`multiattn.tasks.captioning.sources.scenes`),
  cached under ``data_dir``; boxes and word -> object alignments let the system score attention.
- :class:`CaptionData`: COCO captions JSON, Karpathy split JSON or Flickr8k, all through
  :class:`~multiattn.tasks.captioning.datasets.ImageCaptionDataset`.

Both build the vocabulary from the training split only (``min_count``), and expose it as
``.vocab``; the system stores it in its checkpoint. A system loaded from a checkpoint hands its
own vocabulary back through :meth:`set_vocab`, so ids always mean what the model learned.

Exact resume: training draws one of an image's references per access (augmentation over
paraphrases). The draw is a function of ``(seed, epoch, index)`` (:func:`reference_choice`), not of
the global RNG, and the training order comes from a :class:`~multiattn.resumable.ResumableSampler`,
so a run resumed mid-epoch (``multiattn.tasks.common.callbacks.ExactResume``) sees exactly the batches an
uninterrupted run would. The epoch travels with each sampled index (:class:`EpochIndexSampler`
yields ``(epoch, index)``), because DataLoader workers hold copies of the dataset: an epoch set
on the main process's dataset would never reach them, while sampled indices always do.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from multiattn.io import UserError
from multiattn.resumable import ResumableSampler
from multiattn.tasks.captioning.datasets import (
    CaptionSample,
    ImageCaptionDataset,
    SceneCaptionDataset,
    collate_captions,
    filter_readable,
)
from multiattn.tasks.captioning.sources.formats import CaptionRecord, load_coco, load_flickr8k, load_karpathy
from multiattn.tasks.captioning.sources.scenes import STYLES, generate_scenes, load_scene_split
from multiattn.tasks.captioning.vocab import Vocabulary
from multiattn.tasks.common.data import SplitDataModule

__all__ = [
    "SceneCaptionData",
    "CaptionData",
    "EpochIndexSampler",
    "EpochReferenceDataset",
    "reference_choice",
]

SPLITS = ("train", "val", "test")


def reference_choice(seed: int, epoch: int, index: int, count: int) -> int:
    """Which of ``count`` references training item ``index`` uses in ``epoch``: ``0 <= r < count``.

    A pure function of its arguments (a ``SeedSequence`` hash of ``(seed, epoch, index)``, which
    never collides for distinct triples), so every process, worker and resumed run agrees on it.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, received {count}")
    state = np.random.SeedSequence((seed, epoch, index)).generate_state(1, dtype=np.uint64)
    return int(state[0] % np.uint64(count))


class EpochIndexSampler(ResumableSampler):
    """A :class:`~multiattn.resumable.ResumableSampler` that yields ``(epoch, index)`` pairs.

    The order, the per-epoch reshuffle (``set_epoch``) and the mid-epoch skip (``skip_next``) are
    the parent's; the epoch is attached to each index so that it reaches the dataset even in a
    DataLoader worker process.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch  # fixed when the epoch's iterator is created, as the order is
        return ((epoch, index) for index in super().__iter__())


class EpochReferenceDataset(Dataset):
    """Training view of a caption dataset: item ``(epoch, index)`` is trained on a reference chosen
    by :func:`reference_choice`.

    Works with :class:`~multiattn.tasks.captioning.datasets.SceneCaptionDataset` and
    :class:`~multiattn.tasks.captioning.datasets.ImageCaptionDataset` (COCO, Karpathy, Flickr8k) alike: it
    takes the wrapped dataset's sample (which always encodes the first reference) and re-encodes the chosen reference with the wrapped dataset's current ``vocab`` and ``max_words``.

    Args:
        dataset: the training split.
        seed: base seed of the reference draws.
    """

    def __init__(self, dataset: SceneCaptionDataset | ImageCaptionDataset, *, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> CaptionSample | None:
        epoch, index = key
        sample = self.dataset[index]
        if sample is None:  # unreadable image: collate_captions drops it
            return None
        choice = reference_choice(self.seed, epoch, index, len(sample.references))
        sample.tokens = self.dataset.vocab.encode(sample.references[choice], max_len=self.dataset.max_words)
        return sample


class _CaptionDataBase(SplitDataModule):
    """Loaders, vocabulary hand-over and batching shared by both data modules."""

    batch_size: int
    num_workers: int
    seed: int
    vocab: Vocabulary | None
    datasets: dict

    def set_vocab(self, vocab: Vocabulary) -> None:
        """Use ``vocab`` (a checkpoint's) instead of the one built from the training split."""
        self.vocab = vocab
        for dataset in self.datasets.values():
            dataset.vocab = vocab

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for the {split} loader")
        dataset, sampler = self.datasets[split], None
        if split == "train":
            # Order and reference draws depend only on (seed, epoch, index): exact mid-epoch resume.
            dataset = EpochReferenceDataset(dataset, seed=self.seed)
            sampler = EpochIndexSampler(len(dataset), shuffle=shuffle, seed=self.seed)
        elif shuffle:
            raise ValueError(f"{type(self).__name__}: only the train split is shuffled, not {split}")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=functools.partial(collate_captions, pad_id=0),
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),  # asynchronous copies to the GPU
            drop_last=False,
        )


class SceneCaptionData(_CaptionDataBase):
    """Embedded scenes of coloured shapes with paraphrased captions, boxes and word alignments.

    Args:
        data_dir: cache directory of the generated splits.
        seed: generator seed (same seed -> identical data); also seeds the training order and
            the per-epoch reference draws.
        image_size: image side in pixels (at least 96).
        num_train: training images.
        num_val: validation images.
        num_test: test images.
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        min_count: a word enters the vocabulary when seen this often in training captions.
        max_words: captions are cut to this many words.
        style: ``plain`` (solid upright shapes on a flat background) or ``varied`` (the same
            words drawn with varied rendering, colours, backgrounds, overlap and 1-4 objects:
            :mod:`multiattn.tasks.captioning.sources.varied`).
    """

    has_boxes = True

    def __init__(
        self,
        *,
        data_dir: str = "data/captioning/scenes",
        seed: int = 0,
        image_size: int = 96,
        num_train: int = 10_000,
        num_val: int = 500,
        num_test: int = 1_000,
        batch_size: int = 64,
        num_workers: int = 0,
        min_count: int = 1,
        max_words: int = 30,
        style: Literal["plain", "varied"] = "plain",
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise UserError(f"--data.style: expected one of {', '.join(STYLES)}, received {style!r}")
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.seed = seed
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.min_count = min_count
        self.max_words = max_words
        self.vocab: Vocabulary | None = None
        self.datasets: dict[str, SceneCaptionDataset] = {}

    def prepare_data(self) -> None:
        hp = self.hparams
        generate_scenes(
            hp.data_dir,
            seed=hp.seed,
            image_size=hp.image_size,
            num_train=hp.num_train,
            num_val=hp.num_val,
            num_test=hp.num_test,
            style=hp.style,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.prepare_data()  # a no-op when the cache is valid; makes setup() enough on its own
        splits = {s: load_scene_split(self.data_dir, s) for s in SPLITS}
        if self.vocab is None:
            self.vocab = Vocabulary.build(
                (c for ann in splits["train"][1] for c in ann["captions"]), min_count=self.min_count
            )
        for split, (images, scene_annotations) in splits.items():
            # The training loader's EpochReferenceDataset draws the reference (datasets take the first).
            self.datasets[split] = SceneCaptionDataset(
                images, scene_annotations, self.vocab, max_words=self.max_words
            )


class CaptionData(_CaptionDataBase):
    """Real captions: COCO captions JSON, Karpathy split JSON, or Flickr8k token file + split lists.

    Args:
        format: ``coco``, ``karpathy`` or ``flickr8k``.
        image_dir: folder of the images (Karpathy: the root that ``filepath/filename`` is under;
            COCO: the training images folder).
        annotations: COCO: the training captions JSON; Karpathy: the split JSON.
        val_annotations: COCO: the validation captions JSON.
        test_annotations: COCO: the test captions JSON (default: the validation file).
        val_image_dir: COCO: folder of the validation / test images (default ``image_dir``).
        token_file: Flickr8k: ``Flickr8k.token.txt``.
        train_list: Flickr8k: ``Flickr_8k.trainImages.txt``.
        val_list: Flickr8k: ``Flickr_8k.devImages.txt``.
        test_list: Flickr8k: ``Flickr_8k.testImages.txt``.
        restval_to: Karpathy: where ``restval`` images go (``train`` or ``drop``).
        image_size: images are resized to this square side.
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        min_count: a word enters the vocabulary when seen this often in training captions.
        max_words: captions are cut to this many words.
        verify_images: check every image header up front and drop unreadable ones (with a
            warning and a count); unreadable images are skipped at load time either way.
        seed: seed of the training order and of the per-epoch reference draws.
    """

    has_boxes = False

    def __init__(
        self,
        *,
        format: Literal["coco", "karpathy", "flickr8k"],
        image_dir: str,
        annotations: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        val_image_dir: str | None = None,
        token_file: str | None = None,
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        restval_to: Literal["train", "drop"] = "train",
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        min_count: int = 5,
        max_words: int = 20,
        verify_images: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.seed = seed
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.vocab: Vocabulary | None = None
        self.datasets: dict[str, ImageCaptionDataset] = {}
        self.skipped_images: list[str] = []

    def _require(self, **values: str | None) -> None:
        missing = [f"--data.{k}" for k, v in values.items() if not v]
        if missing:
            raise UserError(f"format {self.hparams.format}: missing {', '.join(missing)}")

    def read_records(self) -> list[CaptionRecord]:
        """Every record of every split, read from the configured files."""
        hp = self.hparams
        if hp.format == "coco":
            self._require(annotations=hp.annotations, val_annotations=hp.val_annotations)
            val_dir = hp.val_image_dir or hp.image_dir
            return [
                *load_coco(hp.annotations, hp.image_dir, split="train"),
                *load_coco(hp.val_annotations, val_dir, split="val"),
                *load_coco(hp.test_annotations or hp.val_annotations, val_dir, split="test"),
            ]
        if hp.format == "karpathy":
            self._require(annotations=hp.annotations)
            return load_karpathy(hp.annotations, hp.image_dir, restval_to=hp.restval_to)
        if hp.format == "flickr8k":
            self._require(
                token_file=hp.token_file,
                train_list=hp.train_list,
                val_list=hp.val_list,
                test_list=hp.test_list,
            )
            lists = {"train": hp.train_list, "val": hp.val_list, "test": hp.test_list}
            return load_flickr8k(hp.token_file, hp.image_dir, lists)
        raise UserError(f"--data.format: expected one of coco, karpathy, flickr8k, received {hp.format!r}")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        records = self.read_records()
        if self.hparams.verify_images:
            records, self.skipped_images = filter_readable(records)
        by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
        if not by_split["train"]:
            source = self.hparams.annotations or self.hparams.token_file
            raise UserError(f"{source}: no readable training images")
        if self.vocab is None:
            self.vocab = Vocabulary.build(
                (c for r in by_split["train"] for c in r.references), min_count=self.hparams.min_count
            )
        for split, split_records in by_split.items():
            self.datasets[split] = ImageCaptionDataset(
                split_records,
                self.vocab,
                image_size=self.image_size,
                max_words=self.hparams.max_words,
            )

    @property
    def data_dir(self) -> str:
        return str(Path(self.hparams.image_dir))
