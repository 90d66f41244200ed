"""The embedded scene generator: deterministic, well-formed, cached, aligned words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multiattn.tasks.captioning.sources.scenes import (
    COLOURS,
    colour_shape_pairs,
    generate_scenes,
    generate_split,
    load_scene_split,
)
from tests.helpers.scenes import assert_words_name_their_objects


def test_same_seed_same_bytes_different_seed_differs():
    a_images, a_ann = generate_split(12, seed=5)
    b_images, b_ann = generate_split(12, seed=5)
    c_images, c_ann = generate_split(12, seed=6)
    assert a_images.tobytes() == b_images.tobytes() and a_ann == b_ann
    assert a_images.tobytes() != c_images.tobytes()
    assert a_ann != c_ann


def test_scenes_are_well_formed():
    images, annotations = generate_split(60, seed=1, image_size=96)
    assert images.shape == (60, 96, 96, 3) and images.dtype == np.uint8
    counts = set()
    for image, ann in zip(images, annotations):
        objects = ann["objects"]
        counts.add(len(objects))
        assert 1 <= len(objects) <= 3
        assert len({(o["colour"], o["shape"]) for o in objects}) == len(objects)
        assert len(ann["captions"]) >= 3
        for caption, owners in zip(ann["captions"], ann["word_objects"]):
            words = caption.split()
            assert_words_name_their_objects(words, owners, objects)
            assert set(colour_shape_pairs(words)) == {(o["colour"], o["shape"]) for o in objects}
        background = np.array(ann["background"], dtype=np.uint8)
        for obj in objects:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
            # the object's colour is painted inside its box, and the corner pixels outside the
            # shape keep the background (boxes do not overlap)
            patch = image[y0:y1, x0:x1].reshape(-1, 3).astype(int)
            target = np.array(COLOURS[obj["colour"]])
            assert (np.abs(patch - target).max(axis=1) <= 12).mean() > 0.3
        assert (image[0, 0] == background).all() or any(
            o["box"][0] == 0 and o["box"][1] == 0 for o in objects
        )
    assert counts == {1, 2, 3}


def test_relations_match_geometry():
    _, annotations = generate_split(80, seed=2)
    seen = set()
    for ann in annotations:
        if len(ann["objects"]) != 2:
            continue
        a, b = ann["objects"]
        words = ann["captions"][0]
        (xa, ya), (xb, yb) = a["centre"], b["centre"]
        for relation, holds in (
            ("left of", xa < xb and abs(xa - xb) > abs(ya - yb)),
            ("right of", xa > xb and abs(xa - xb) > abs(ya - yb)),
            ("above", ya < yb and abs(ya - yb) > abs(xa - xb)),
            ("below", ya > yb and abs(ya - yb) > abs(xa - xb)),
        ):
            if f" {relation} " in words:
                assert holds, (words, a, b)
                seen.add(relation)
    assert seen == {"left of", "right of", "above", "below"}


def test_small_images_are_refused():
    with pytest.raises(ValueError, match="at least 96"):
        generate_split(2, seed=0, image_size=64)


def test_cache_is_reused_and_regenerated_when_corrupt(tmp_path):
    root = tmp_path / "scenes"
    manifest = generate_scenes(root, seed=0, num_train=8, num_val=4, num_test=4)
    assert manifest["splits"] == {"train": 8, "val": 4, "test": 4}
    images, annotations = load_scene_split(root, "train")
    assert images.shape[0] == len(annotations) == 8
    stamp = (root / "train_images.npy").stat().st_mtime_ns
    generate_scenes(root, seed=0, num_train=8, num_val=4, num_test=4)
    assert (root / "train_images.npy").stat().st_mtime_ns == stamp  # reused
    (root / "val_annotations.json").write_text("[", encoding="utf-8")  # truncated
    generate_scenes(root, seed=0, num_train=8, num_val=4, num_test=4)
    assert len(json.loads((root / "val_annotations.json").read_text())) == 4
    again, _ = load_scene_split(root, "train")
    assert np.array_equal(np.asarray(again), np.asarray(images))
