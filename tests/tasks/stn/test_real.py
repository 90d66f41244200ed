"""Real-format loaders on tiny fixtures the tests write: MNIST / FashionMNIST IDX files,
CIFAR-10 python batches, ImageFolder trees; the data module over each source."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiattn.io import UserError
from multiattn.tasks.stn.data import STNBatch, STNDataModule
from multiattn.tasks.stn.sources.real import load_cifar10, load_mnist_like, read_cifar_batch


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> None:
    """IDX as in LeCun's MNIST files: magic (0, 0, 0x08 = ubyte, ndim), big-endian int32 dims, data."""
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(
    root: Path, folder: str = "MNIST", *, train: int = 40, test: int = 12, compress: bool = False
):
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, count in (("train", train), ("t10k", test)):
        images = np.zeros((count, 28, 28), np.uint8)
        labels = np.arange(count) % 10
        for i, label in enumerate(labels):  # a bar whose position encodes the label
            images[i, 4:24, 2 + 2 * label : 5 + 2 * label] = 200 + rng.integers(0, 55)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress=compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress=compress)
    return raw


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files_load(tmp_path, compress):
    write_mnist(tmp_path, compress=compress)
    train = load_mnist_like("mnist", tmp_path, train=True, download=False)
    test = load_mnist_like("mnist", tmp_path, train=False, download=False)
    assert train.images.shape == (40, 28, 28) and test.images.shape == (12, 28, 28)
    assert train.labels.tolist() == [i % 10 for i in range(40)]
    assert train.classes[0].startswith("0")
    assert train.images[3, 10, 2 + 6] >= 200


def test_fashion_mnist_layout(tmp_path):
    write_mnist(tmp_path, "FashionMNIST")
    split = load_mnist_like("fashion_mnist", tmp_path, train=True, download=False)
    assert split.images.shape == (40, 28, 28) and split.classes[0] == "T-shirt/top"


def test_mnist_missing_or_corrupt_is_one_line(tmp_path):
    with pytest.raises(UserError, match="MNIST not found") as info:
        load_mnist_like("mnist", tmp_path, train=True, download=False)
    assert "\n" not in str(info.value)
    raw = write_mnist(tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(UserError, match="corrupt"):
        load_mnist_like("mnist", tmp_path, train=True, download=False)


def write_cifar(root: Path, *, per_batch: int = 6) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, handle, protocol=2)
    return folder


def test_cifar_batches_load(tmp_path):
    folder = write_cifar(tmp_path)
    train = load_cifar10(tmp_path, train=True, download=False)
    test = load_cifar10(tmp_path, train=False, download=False)
    assert train.images.shape == (30, 32, 32, 3) and test.images.shape == (6, 32, 32, 3)
    assert train.classes[0] == "airplane"
    raw = read_cifar_batch(folder / "test_batch")["data"]
    # Channel planes (R, G, B) become the last axis.
    assert test.images[0, 0, 1, 2] == raw[0, 2 * 1024 + 1]


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(UserError, match="not allowed"):
        load_cifar10(tmp_path, train=False, download=False)
    with pytest.raises(UserError, match="not found"):
        load_cifar10(tmp_path / "nothing", train=True, download=False)


def write_image_folder(root: Path, *, per_class: int = 5, splits: bool = False) -> None:
    rng = np.random.default_rng(2)
    for split in ("train", "val") if splits else ("",):
        for label, name in enumerate(("circle", "square")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                size = int(rng.integers(20, 50))
                image = np.zeros((size, size + i, 3), np.uint8)
                image[size // 4 : 3 * size // 4, size // 4 : size // 2, label] = 255
                Image.fromarray(image).save(folder / f"{i}.png")
            (folder / "notes.txt").write_text("ignored: not an image extension")


@pytest.mark.parametrize("splits", [False, True])
def test_image_folder_data_module(tmp_path, splits):
    write_image_folder(tmp_path, splits=splits)
    data = STNDataModule(
        source="image_folder",
        root=str(tmp_path),
        variant="plain",
        image_size=24,
        channels=3,
        batch_size=4,
        val_size=2,
    )
    data.setup("fit")
    assert data.class_names == ["circle", "square"] and data.in_channels == 3
    batch = next(iter(data.train_dataloader()))
    assert isinstance(batch, STNBatch) and batch.images.shape == (4, 3, 24, 24) and batch.boxes is None
    assert len(data.datasets["train"]) == (10 if splits else 8)


def test_mnist_data_module_applies_clutter(tmp_path):
    write_mnist(tmp_path)
    data = STNDataModule(
        source="mnist", root=str(tmp_path), variant="cluttered", val_size=8, batch_size=8, progress=False
    )
    data.setup("fit")
    assert data.input_size == (60, 60)
    batch = next(iter(data.train_dataloader()))
    assert batch.images.shape == (8, 1, 60, 60) and batch.boxes.shape == (8, 4)
    assert (
        len(data.datasets["train"]) == 32
        and len(data.datasets["val"]) == 8
        and len(data.datasets["test"]) == 12
    )
    plain = STNDataModule(
        source="mnist", root=str(tmp_path), variant="plain", val_size=8, batch_size=40, progress=False
    )
    plain.setup("fit")
    test = next(iter(plain.test_dataloader()))
    # The measured box of a bar drawn at columns 2+2k..4+2k, rows 4..23.
    k = int(test.labels[0])
    assert test.boxes[0].tolist() == [1.5 + 2 * k, 3.5, 4.5 + 2 * k, 23.5]


def test_cifar_data_module(tmp_path):
    write_cifar(tmp_path)
    data = STNDataModule(source="cifar10", root=str(tmp_path), variant="plain", val_size=5, batch_size=5)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert batch.images.shape == (5, 3, 32, 32) and data.class_names[-1] == "truck"
    with pytest.raises(ValueError, match="variant"):
        STNDataModule(source="cifar10", root=str(tmp_path), variant="RTS")
    with pytest.raises(ValueError, match="needs root"):
        STNDataModule(source="mnist")
