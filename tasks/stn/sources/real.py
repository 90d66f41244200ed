"""Real datasets users bring: torchvision MNIST / FashionMNIST / CIFAR-10 and ImageFolder trees.

MNIST and FashionMNIST use torchvision's folder layout, ``<root>/MNIST/raw/*-idx?-ubyte`` (the
IDX files as torchvision 0.29 reads them, uncompressed); a root holding only the ``.gz`` files
is decompressed in place, as torchvision's own download does. CIFAR-10 uses torchvision's
``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` pickles, read with an
unpickler that only admits numpy arrays (a crafted batch file cannot run code). With
``download=True`` torchvision fetches the files first (needs a network).

The same distortions and clutter as the embedded data (:mod:`.distort`) apply to MNIST-like
28x28 sets, each image distorted once, so MNIST users reproduce the paper's benchmarks.

Shape legend: ``N`` images, ``H, W`` size, ``C`` channels.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multiattn.io import UserError

__all__ = ["ArraySplit", "load_mnist_like", "load_cifar10", "read_cifar_batch", "MNIST_LIKE"]

MNIST_LIKE = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class ArraySplit:
    """One split in memory.

    Attributes:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` uint8.
        labels: ``(N,)`` int64.
        classes: class names, index = label.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]


def _decompress_gz(raw: Path) -> None:
    for name in _MNIST_FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if not target.exists() and packed.exists():
            try:
                with gzip.open(packed, "rb") as src, open(target.with_suffix(".part"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as err:
                raise UserError(f"{packed}: not a readable gzip file ({err})") from None
            target.with_suffix(".part").replace(target)


def load_mnist_like(name: str, root: str | Path, *, train: bool, download: bool) -> ArraySplit:
    """MNIST or FashionMNIST through torchvision.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        root: the folder holding ``MNIST/raw`` (or ``FashionMNIST/raw``).
        train: the 60k training file, else the 10k test file.
        download: let torchvision download missing files.
    """
    from torchvision import datasets

    if name not in MNIST_LIKE:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(MNIST_LIKE)}")
    folder = MNIST_LIKE[name]
    raw = Path(root) / folder / "raw"
    if raw.is_dir():
        _decompress_gz(raw)
    cls = getattr(datasets, folder)
    try:
        dataset = cls(str(root), train=train, download=download)
    except RuntimeError as err:
        raise UserError(
            f"{raw}: {folder} not found ({err}); put {', '.join(_MNIST_FILES)} (or their .gz) there, "
            "or set download: true when online"
        ) from None
    except (AssertionError, ValueError, TypeError) as err:
        raise UserError(f"{raw}: {folder} IDX files are corrupt ({type(err).__name__}: {err})") from None
    images, labels = dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"{raw}: {len(images)} images but {len(labels)} labels")
    return ArraySplit(images=images, labels=labels, classes=[str(c) for c in dataset.classes])


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the globals a CIFAR batch needs (numpy array reconstruction) and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def read_cifar_batch(path: str | Path) -> dict:
    """One CIFAR python-format batch: a dict with ``data`` ``(N, 3072)`` uint8 and ``labels``."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            batch = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(f"{path}: CIFAR-10 batch not found") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, AttributeError, ImportError) as err:
        raise UserError(f"{path}: not a readable CIFAR-10 batch ({err})") from None
    if not isinstance(batch, dict):
        raise UserError(f"{path}: not a CIFAR-10 batch (expected a dict)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}


def load_cifar10(root: str | Path, *, train: bool, download: bool) -> ArraySplit:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (downloaded first when ``download``)."""
    folder = Path(root) / "cifar-10-batches-py"
    if download:
        from torchvision import datasets

        datasets.CIFAR10(str(root), train=train, download=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    present = [n for n in names if (folder / n).exists()]
    if not present:
        raise UserError(
            f"{folder}: CIFAR-10 batches not found ({', '.join(names)}); set download: true when online"
        )
    images, labels = [], []
    for name in present:
        batch = read_cifar_batch(folder / name)
        data = np.asarray(batch.get("data"), dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or "labels" not in batch:
            raise UserError(f"{folder / name}: expected 'data' of shape (N, 3072) and 'labels'")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 3072) -> (N, 32, 32, 3)
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    classes = [str(i) for i in range(10)]
    meta = folder / "batches.meta"
    if meta.exists():
        names_list = read_cifar_batch(meta).get("label_names")
        if isinstance(names_list, list) and len(names_list) == 10:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names_list]
    return ArraySplit(images=np.concatenate(images), labels=np.concatenate(labels), classes=classes)
