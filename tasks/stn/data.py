"""LightningDataModule of the spatial transformer classifier.

One module serves every data source, chosen by ``source``:

- ``embedded`` (default): distorted / cluttered digits generated offline
  (:mod:`multiattn.tasks.stn.sources.embedded`), with each digit's true box;
- ``mnist`` / ``fashion_mnist``: torchvision's files under ``root``, optionally distorted or
  cluttered with the same generator (``variant``), boxes measured on the digit's ink;
- ``cifar10``: torchvision's python batches under ``root`` (no boxes);
- ``image_folder``: an ImageFolder tree (``root/<class>/*.png`` or ``root/{train,val,test}/<class>``),
  images converted exactly as ``multiattn classify`` converts them (no boxes).

Batches are :class:`STNBatch`. Images are float in [0, 1], light on dark for digits; the
model normalises *after* warping (docs/conventions.md: normalising before a zero-padded warp is a
cause of collapse).

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` image size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from multiattn.io import UserError
from multiattn.resumable import MixtureSampler, ResumableSampler
from multiattn.tasks.common.data import SplitDataModule
from multiattn.tasks.stn.sources.distort import (
    VARIANTS,
    DistortionSpec,
    distort_digits,
    ink_boxes,
    variety_spec,
)
from multiattn.tasks.stn.sources.embedded import generate_embedded, load_split
from multiattn.tasks.stn.sources.glyphs import VARIETIES
from multiattn.tasks.stn.sources.images import prepare_image, read_image
from multiattn.tasks.stn.sources.real import MNIST_LIKE, ArraySplit, load_cifar10, load_mnist_like

__all__ = ["STNBatch", "ArrayImageDataset", "collate_batch", "STNDataModule", "SOURCES"]

SOURCES = ("embedded", "mnist", "fashion_mnist", "cifar10", "image_folder")


@dataclass
class STNBatch:
    """A batch of images.

    Attributes:
        images: ``(B, C, H, W)`` float in [0, 1].
        labels: ``(B,)`` int64.
        boxes: ``(B, 4)`` float ``(x0, y0, x1, y1)`` true object boxes in pixels, or ``None``.
    """

    images: Tensor
    labels: Tensor
    boxes: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def pin_memory(self) -> STNBatch:
        """Page-locked copies (``DataLoader(pin_memory=True)``): host-to-GPU copies run asynchronously."""
        boxes = None if self.boxes is None else self.boxes.pin_memory()
        return STNBatch(self.images.pin_memory(), self.labels.pin_memory(), boxes)


class ArrayImageDataset(Dataset):
    """uint8 images in memory (or memory-mapped) -> :class:`STNBatch` slices.

    ``__getitems__`` builds a whole batch with one fancy index, so the DataLoader does no
    per-image Python work.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` uint8.
        labels: ``(N,)`` int.
        boxes: ``(N, 4)`` float, or ``None``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, boxes: np.ndarray | None = None) -> None:
        if len(images) != len(labels) or (boxes is not None and len(boxes) != len(labels)):
            raise ValueError(f"images / labels / boxes lengths differ: {len(images)}, {len(labels)}")
        self.images, self.labels, self.boxes = images, labels, boxes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> STNBatch:
        index = np.sort(np.asarray(indices))  # sorted reads are sequential on a memory map
        order = np.argsort(np.argsort(np.asarray(indices)))  # back to the sampler's order
        pixels = torch.from_numpy(np.ascontiguousarray(self.images[index][order]))
        if pixels.dim() == 3:
            pixels = pixels[:, None]  # (B, H, W) -> (B, 1, H, W)
        else:
            pixels = pixels.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        boxes = (
            None if self.boxes is None else torch.from_numpy(np.asarray(self.boxes[index][order], np.float32))
        )
        labels = torch.from_numpy(np.asarray(self.labels[index][order], dtype=np.int64))
        return STNBatch(images=pixels.float() / 255.0, labels=labels, boxes=boxes)

    def __getitem__(self, index: int) -> STNBatch:
        return self.__getitems__([index])


def collate_batch(items: STNBatch | list) -> STNBatch:
    """Collate ``(image (C, H, W), label)`` pairs or single-item batches into one :class:`STNBatch`."""
    if isinstance(items, STNBatch):
        return items
    if isinstance(items[0], STNBatch):
        boxes = None if items[0].boxes is None else torch.cat([b.boxes for b in items])
        return STNBatch(torch.cat([b.images for b in items]), torch.cat([b.labels for b in items]), boxes)
    images = torch.stack([image for image, _ in items])  # (B, C, H, W)
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
    return STNBatch(images=images, labels=labels)


def _load_folder_image(path: str, *, channels: int, size: tuple[int, int], light_on_dark: bool) -> Tensor:
    return prepare_image(read_image(path, size), channels=channels, size=size, light_on_dark=light_on_dark)[0]


class STNDataModule(SplitDataModule):
    """Data for the spatial transformer classifier.

    Args:
        source: one of ``embedded``, ``mnist``, ``fashion_mnist``, ``cifar10``, ``image_folder``.
        data_dir: cache folder of the embedded data (``<data_dir>/<variant>``).
        root: dataset root for the real sources.
        download: let torchvision download MNIST / FashionMNIST / CIFAR-10 (needs a network).
        variant: ``plain``, ``R``, ``RTS``, ``P``, ``E`` or ``cluttered`` (embedded, MNIST-like).
        canvas_size: output side; ``None`` = the paper's (28, RTS 42, cluttered 60).
        rotation: maximum rotation in degrees; ``None`` = the variant's.
        scale_range: digit scale range; ``None`` = the variant's.
        clutter_pieces: (min, max) distractor fragments per cluttered image.
        clutter_size: side of a distractor fragment.
        train_size: embedded training images.
        val_size: embedded validation images; for MNIST-like / CIFAR / unsplit folders, the number
            held out of the training set.
        test_size: embedded test images.
        image_size: side images from an ImageFolder tree are letterboxed and resized to.
        channels: 1 or 3, for ImageFolder trees (the other sources fix it).
        folder_light_on_dark: ImageFolder images with a bright border are inverted, so everything
            is light on dark (the MNIST convention; for digit / sketch folders, not photos).
        batch_size: images per batch.
        num_workers: DataLoader workers.
        seed: generation and split seed.
        progress: progress bars while generating.
        variety: digits of the embedded source: ``standard`` (scikit-learn's handwriting and
            matplotlib's 21 fonts), ``broad`` (also every usable font on the machine, dozens of
            families after ``make fonts``, and wide style variety: stroke width, slant, aspect,
            blur, noise, contrast, inversion, rotation, scale, clutter density; see docs/stn.md)
            or ``varied`` (the broad fonts, grounds and contrast with half the broad shape
            styles and no inversion). Cached apart, under ``<data_dir>/<variant>-<variety>``.
        font_dirs: extra folders of ``.ttf`` / ``.otf`` fonts for ``variety: varied / broad``.
        curriculum_epochs: with ``variety: varied / broad``, train this many first epochs on the
            standard digits only (their own training split, generated and cached beside), then
            on a mixture of both; 0 (default) trains on ``variety`` alone. With the standard
            digits (or another source) there is nothing to mix and it has no effect. Validation and test
            are ``variety``'s. Measured in docs/stn.md: the region learns to find the digit on
            the plainer digits first, then holds on the varied ones.
        curriculum_share: after ``curriculum_epochs``, the share of each epoch's images that stay
            standard digits (the rest are ``variety``'s). An epoch is ``train_size`` images either way.
    """

    def __init__(
        self,
        *,
        source: str = "embedded",
        data_dir: str = "data/stn",
        root: str | None = None,
        download: bool = False,
        variant: str = "cluttered",
        canvas_size: int | None = None,
        rotation: float | None = None,
        scale_range: tuple[float, float] | None = None,
        clutter_pieces: tuple[int, int] = (4, 6),
        clutter_size: int = 6,
        train_size: int = 50000,
        val_size: int = 5000,
        test_size: int = 10000,
        image_size: int = 32,
        channels: int = 3,
        folder_light_on_dark: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        progress: bool = True,
        variety: str = "standard",
        font_dirs: list[str] | None = None,
        curriculum_epochs: int = 0,
        curriculum_share: float = 0.5,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
        if source in ("cifar10", "image_folder") and variant != "plain":
            raise ValueError(
                f"variant {variant!r} applies to digits (embedded, mnist, fashion_mnist); use 'plain'"
            )
        if source != "embedded" and root is None:
            raise ValueError(f"source {source!r} needs root (the dataset folder)")
        if variety not in VARIETIES:
            raise ValueError(f"unknown variety {variety!r}; valid varieties: {', '.join(VARIETIES)}")
        if variety != "standard" and source != "embedded":
            raise ValueError(f"variety {variety!r} applies to the embedded source only")
        if curriculum_epochs < 0 or not 0.0 <= curriculum_share <= 1.0:
            raise ValueError(
                f"curriculum_epochs must be >= 0 and curriculum_share in [0, 1], received "
                f"{curriculum_epochs} and {curriculum_share}"
            )
        self.save_hyperparameters()
        self.variety, self.font_dirs = variety, list(font_dirs or [])
        # The curriculum starts from the standard digits: with those alone (variety 'standard', the
        # only one of the non-embedded sources) there is nothing to mix, and it is off.
        active = curriculum_epochs > 0 and variety != "standard"
        self.curriculum = (int(curriculum_epochs), float(curriculum_share)) if active else None
        self.spec = DistortionSpec(
            variant=variant,
            canvas_size=canvas_size,
            rotation=rotation,
            scale_range=None if scale_range is None else (float(scale_range[0]), float(scale_range[1])),
            clutter_pieces=(int(clutter_pieces[0]), int(clutter_pieces[1])),
            clutter_size=clutter_size,
        )
        self.standard_spec = self.spec
        self.spec = variety_spec(self.spec, variety)
        self.source, self.root, self.download = source, root, download
        self.data_dir, self.seed, self.progress = data_dir, seed, progress
        self.sizes = (train_size, val_size, test_size)
        self.image_size = image_size
        # Whether the images the model trains on are light strokes on dark (the app inverts
        # paper-like inputs to match when they are).
        self.light_on_dark = source in ("embedded", *MNIST_LIKE) or (
            source == "image_folder" and folder_light_on_dark
        )
        self.batch_size, self.num_workers = batch_size, num_workers
        self.datasets: dict[str, Dataset] = {}
        self.class_names: list[str] = [str(d) for d in range(10)]
        self.in_channels = (
            1 if source in ("embedded", *MNIST_LIKE) else (3 if source == "cifar10" else channels)
        )
        self.input_size = self._input_size()

    def _input_size(self) -> tuple[int, int]:
        if self.source in ("embedded", *MNIST_LIKE):
            return (self.spec.canvas, self.spec.canvas)
        side = 32 if self.source == "cifar10" else self.image_size
        return (side, side)

    # ---- preparation -------------------------------------------------------------------------
    def _generate_embedded(self, *, standard: bool = False) -> Path:
        return generate_embedded(
            self.data_dir,
            self.standard_spec if standard else self.spec,
            sizes=self.sizes,
            seed=self.seed,
            progress=self.progress,
            variety="standard" if standard else self.variety,
            font_dirs=self.font_dirs,
        )

    def prepare_data(self) -> None:
        if self.source == "embedded":
            self._generate_embedded()
            if self.curriculum is not None:
                self._generate_embedded(standard=True)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.source == "embedded":
            root = self._generate_embedded()
            for split in ("train", "val", "test"):
                arrays = load_split(root, split)
                self.datasets[split] = ArrayImageDataset(arrays["images"], arrays["labels"], arrays["boxes"])
            if self.curriculum is not None:
                # Standard digits first in one stacked training set; the sampler picks the mixture.
                standard = load_split(self._generate_embedded(standard=True), "train")
                varied = self.datasets["train"]
                self.datasets["train"] = ArrayImageDataset(
                    *(
                        np.concatenate([standard[key], getattr(varied, key)])
                        for key in ("images", "labels", "boxes")
                    )
                )
        elif self.source in MNIST_LIKE:
            self._setup_mnist_like()
        elif self.source == "cifar10":
            train = load_cifar10(self.root, train=True, download=self.download)
            test = load_cifar10(self.root, train=False, download=self.download)
            self.class_names = train.classes
            train_part, val_part = self._hold_out(train)
            self.datasets = {
                "train": ArrayImageDataset(train_part.images, train_part.labels),
                "val": ArrayImageDataset(val_part.images, val_part.labels),
                "test": ArrayImageDataset(test.images, test.labels),
            }
        else:
            self._setup_image_folder()

    def _hold_out(self, split: ArraySplit) -> tuple[ArraySplit, ArraySplit]:
        count = len(split.labels)
        held = min(self.sizes[1], count // 5) if count > 1 else 0
        order = np.random.default_rng(self.seed).permutation(count)
        val_index, train_index = np.sort(order[:held]), np.sort(order[held:])
        if held == 0:
            val_index = train_index
        pick = lambda idx: ArraySplit(split.images[idx], split.labels[idx], split.classes)  # noqa: E731
        return pick(train_index), pick(val_index)

    def _setup_mnist_like(self) -> None:
        train = load_mnist_like(self.source, self.root, train=True, download=self.download)
        test = load_mnist_like(self.source, self.root, train=False, download=self.download)
        self.class_names = train.classes
        train_part, val_part = self._hold_out(train)
        for index, (split, part) in enumerate((("train", train_part), ("val", val_part), ("test", test))):
            if part.images.shape[1:] != (28, 28):
                raise UserError(f"{self.root}: expected 28x28 images, found {part.images.shape[1:]}")
            if self.spec.variant == "plain" and self.spec.canvas == 28:
                images = part.images
                boxes = ink_boxes(torch.from_numpy(images).float() / 255.0).numpy()
            else:
                made = distort_digits(
                    part.images,
                    part.labels,
                    self.spec,
                    num_samples=len(part.labels),
                    seed=self.seed * 1009 + index,
                    one_per_source=True,
                    progress=self.progress,
                    description=f"{self.source} {self.spec.variant} {split}",
                )
                images, boxes = made.images, made.boxes
            self.datasets[split] = ArrayImageDataset(images, part.labels, boxes)

    def _setup_image_folder(self) -> None:
        from torchvision.datasets import ImageFolder

        root = Path(self.root)
        if not root.is_dir():
            raise UserError(f"{root}: ImageFolder root not found")
        loader = functools.partial(
            _load_folder_image,
            channels=self.in_channels,
            size=self.input_size,
            light_on_dark=self.light_on_dark,
        )
        try:
            if (root / "train").is_dir():
                trees = {split: root / split for split in ("train", "val", "test") if (root / split).is_dir()}
                sets = {split: ImageFolder(str(path), loader=loader) for split, path in trees.items()}
                classes = sets["train"].classes
                for split, dataset in sets.items():
                    if dataset.classes != classes:
                        raise UserError(
                            f"{trees[split]}: classes {dataset.classes} differ from train's {classes}"
                        )
                sets.setdefault("val", sets.get("test", sets["train"]))
                sets.setdefault("test", sets["val"])
            else:
                full = ImageFolder(str(root), loader=loader)
                classes = full.classes
                order = np.random.default_rng(self.seed).permutation(len(full))
                held = max(1, min(self.sizes[1], len(full) // 5))
                sets = {
                    "train": Subset(full, np.sort(order[held:]).tolist()),
                    "val": Subset(full, np.sort(order[:held]).tolist()),
                }
                sets["test"] = sets["val"]
        except (FileNotFoundError, RuntimeError) as err:
            raise UserError(f"{root}: not an ImageFolder tree ({str(err).splitlines()[0]})") from None
        self.class_names = list(classes)
        self.datasets = sets

    def curriculum_shares(self, epoch: int) -> tuple[float, float]:
        """Shares of (standard, ``variety``) digits in training epoch ``epoch``."""
        epochs, share = self.curriculum or (0, 0.0)
        return (1.0, 0.0) if epoch < epochs else (share, 1.0 - share)

    # ---- loaders -----------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup()
        dataset = self.datasets[split]
        # The order depends only on (seed, epoch), so a run resumed mid-epoch sees the same batches.
        if split == "train" and self.curriculum is not None:
            # The stacked set: the standard split, then the variety's, each train_size images.
            train_size = self.sizes[0]
            sampler = MixtureSampler(
                [len(dataset) - train_size, train_size],
                self.curriculum_shares,
                num_samples=train_size,
                seed=self.seed,
            )
        else:
            sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),  # asynchronous copies to the GPU
        )
