"""Real caption formats (COCO, Karpathy, Flickr8k) load from tiny fixtures through one dataset class."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from multiattn.io import UserError
from multiattn.tasks.captioning.data import CaptionData
from multiattn.tasks.captioning.datasets import CaptionBatch
from multiattn.tasks.captioning.sources.formats import load_coco, load_flickr8k, load_karpathy

TRAIN = {
    "t1.jpg": ["A dog runs on grass.", "a dog running"],
    "t2.jpg": ["A cat sleeps.", "the cat is asleep"],
}
VAL = {"v1.jpg": ["A zebra eats.", "zebra eating"]}
TEST = {"s1.jpg": ["An elephant walks.", "elephant walking"]}
TINY = {"image_size": 32, "batch_size": 2, "num_workers": 0, "min_count": 1}  # CaptionData for these fixtures


def _images(folder, names, *, corrupt=()):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        if name in corrupt:
            (folder / name).write_bytes(b"not a jpeg at all")
        else:
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / name)


def _coco_file(path, captions, first_id):
    images, annotations = [], []
    for k, (name, caps) in enumerate(captions.items()):
        images.append({"id": first_id + k, "file_name": name, "height": 20, "width": 30})
        for c in caps:
            annotations.append(
                {"id": len(annotations) + 100 * first_id, "image_id": first_id + k, "caption": c}
            )
    path.write_text(json.dumps({"images": images, "annotations": annotations}), encoding="utf-8")


def _karpathy_file(path):
    images = []
    for split, group in (
        ("train", TRAIN),
        ("val", VAL),
        ("test", TEST),
        ("restval", {"r1.jpg": ["A bird flies."]}),
    ):
        for name, caps in group.items():
            images.append(
                {
                    "filepath": "imgs",
                    "filename": name,
                    "imgid": len(images),
                    "split": split,
                    "sentences": [{"tokens": c.lower().strip(".").split(), "raw": c} for c in caps],
                }
            )
    path.write_text(json.dumps({"dataset": "coco", "images": images}), encoding="utf-8")


def _flickr_files(root):
    lines = [
        f"{name}#{k}\t{c}"
        for group in (TRAIN, VAL, TEST)
        for name, caps in group.items()
        for k, c in enumerate(caps)
    ]
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split, group in (("train", TRAIN), ("dev", VAL), ("test", TEST)):
        (root / f"Flickr_8k.{split}Images.txt").write_text("\n".join(group) + "\n", encoding="utf-8")


def _check_module(data: CaptionData):
    data.setup("fit")
    assert {k: len(v) for k, v in data.datasets.items()} == {"train": 2, "val": 1, "test": 1}
    # the vocabulary comes from training captions only
    assert "dog" in data.vocab and "cat" in data.vocab
    for word in ("zebra", "elephant", "eats", "walks"):
        assert word not in data.vocab
    batch = next(iter(data.val_dataloader()))
    assert isinstance(batch, CaptionBatch)
    assert batch.images.shape == (1, 3, 32, 32)
    assert batch.references == [VAL["v1.jpg"]]
    assert batch.objects is None


def test_coco_loads(tmp_path):
    _images(tmp_path / "train", TRAIN)
    _images(tmp_path / "val", [*VAL, *TEST])
    _coco_file(tmp_path / "train.json", TRAIN, 1)
    _coco_file(tmp_path / "val.json", VAL, 50)
    _coco_file(tmp_path / "test.json", TEST, 90)
    records = load_coco(tmp_path / "train.json", tmp_path / "train", split="train")
    assert [r.references for r in records] == list(TRAIN.values())
    assert records[0].image_path.endswith("train/t1.jpg") and records[0].image_id == 1
    data = CaptionData(
        format="coco",
        image_dir=str(tmp_path / "train"),
        val_image_dir=str(tmp_path / "val"),
        annotations=str(tmp_path / "train.json"),
        val_annotations=str(tmp_path / "val.json"),
        test_annotations=str(tmp_path / "test.json"),
        **TINY,
    )
    _check_module(data)


def test_karpathy_loads(tmp_path):
    _images(tmp_path / "imgs", [*TRAIN, *VAL, *TEST, "r1.jpg"])
    _karpathy_file(tmp_path / "dataset_coco.json")
    records = load_karpathy(tmp_path / "dataset_coco.json", tmp_path)
    assert sorted(r.split for r in records) == ["test", "train", "train", "train", "val"]  # restval -> train
    assert len(load_karpathy(tmp_path / "dataset_coco.json", tmp_path, restval_to="drop")) == 4
    data = CaptionData(
        format="karpathy",
        image_dir=str(tmp_path),
        annotations=str(tmp_path / "dataset_coco.json"),
        restval_to="drop",
        **TINY,
    )
    _check_module(data)


def test_flickr8k_loads(tmp_path):
    _images(tmp_path / "Flicker8k_Dataset", [*TRAIN, *VAL, *TEST])
    _flickr_files(tmp_path)
    lists = {
        s: tmp_path / f"Flickr_8k.{n}Images.txt"
        for s, n in (("train", "train"), ("val", "dev"), ("test", "test"))
    }
    records = load_flickr8k(tmp_path / "Flickr8k.token.txt", tmp_path / "Flicker8k_Dataset", lists)
    assert len(records) == 4 and records[0].references == TRAIN["t1.jpg"]
    data = CaptionData(
        format="flickr8k",
        image_dir=str(tmp_path / "Flicker8k_Dataset"),
        token_file=str(tmp_path / "Flickr8k.token.txt"),
        train_list=str(lists["train"]),
        val_list=str(lists["val"]),
        test_list=str(lists["test"]),
        **TINY,
    )
    _check_module(data)


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    _images(tmp_path / "imgs", [*TRAIN, *VAL, *TEST, "r1.jpg"], corrupt={"t2.jpg"})
    _karpathy_file(tmp_path / "dataset_coco.json")
    common = dict(format="karpathy", image_dir=str(tmp_path), annotations=str(tmp_path / "dataset_coco.json"))
    common.update(TINY, batch_size=4)
    checked = CaptionData(**common, verify_images=True)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        checked.setup("fit")
    assert checked.skipped_images == [str(tmp_path / "imgs" / "t2.jpg")]
    assert len(checked.datasets["train"]) == 2  # t1 + restval r1
    # without the up-front check, the bad file is skipped while loading, the epoch goes on
    lazy = CaptionData(**common, verify_images=False)
    lazy.setup("fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(lazy.train_dataloader())
    assert sum(len(b) for b in batches) == 2
    assert any("t2.jpg" in str(w.message) for w in caught)
    assert lazy.datasets["train"].skipped == {str(tmp_path / "imgs" / "t2.jpg")}


@pytest.mark.parametrize(
    "content, reader",
    [
        ("{not json", lambda p, d: load_coco(p, d, split="train")),
        (json.dumps({"images": []}), lambda p, d: load_coco(p, d, split="train")),
        (json.dumps({"images": [{"filename": "a.jpg"}]}), lambda p, d: load_karpathy(p, d)),
        ("no tab here\n", lambda p, d: load_flickr8k(p, d, {})),
    ],
)
def test_bad_annotation_files_give_one_line_errors_naming_the_file(tmp_path, content, reader):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as info:
        reader(path, tmp_path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(UserError, match="missing.json: file not found"):
        load_coco(tmp_path / "missing.json", tmp_path, split="val")
    data = CaptionData(format="flickr8k", image_dir=str(tmp_path))
    with pytest.raises(UserError, match="--data.token_file"):
        data.setup("fit")
