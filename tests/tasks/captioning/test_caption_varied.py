"""The varied scene style and the out-of-generator renderer: deterministic, exact boxes, true captions."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
from matplotlib.path import Path

from multiattn.io import UserError
from multiattn.tasks.captioning.scoring import SceneScorer
from multiattn.tasks.captioning.sources.oog import generate_oog, generate_oog_split
from multiattn.tasks.captioning.sources.scenes import (
    COLOURS,
    SHAPES,
    SIZES,
    colour_shape_pairs,
    generate_scenes,
)
from multiattn.tasks.captioning.sources.varied import (
    BACKGROUNDS,
    COLOUR_RANGES,
    generate_varied_split,
    relation_of,
    shape_outline,
)
from tests.helpers.scenes import assert_words_name_their_objects


@pytest.fixture(scope="module")
def varied():
    return generate_varied_split(120, seed=3)


@pytest.fixture(scope="module")
def oog():
    return generate_oog_split(40, seed=3)


def _colour_name(rgb: np.ndarray) -> str | None:
    """The colour name whose hue range (with some slack for JPEG and blending) holds ``rgb``."""
    h, s, _ = colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=float) / 255.0))
    if s < 0.3:
        return None
    hue = h * 360.0
    for name, ((h0, h1), _, _) in COLOUR_RANGES.items():
        if any(h0 - 10 <= hue + shift <= h1 + 10 for shift in (-360.0, 0.0)):
            return name
    return None


def test_same_seed_same_bytes_different_seed_differs():
    a_images, a_ann = generate_varied_split(10, seed=5)
    b_images, b_ann = generate_varied_split(10, seed=5)
    c_images, c_ann = generate_varied_split(10, seed=6)
    assert a_images.tobytes() == b_images.tobytes() and a_ann == b_ann
    assert a_images.tobytes() != c_images.tobytes() and a_ann != c_ann
    d_images, d_ann = generate_oog_split(6, seed=5)
    e_images, e_ann = generate_oog_split(6, seed=5)
    assert d_images.tobytes() == e_images.tobytes() and d_ann == e_ann


def test_varied_scenes_cover_the_promised_variety(varied):
    images, annotations = varied
    assert images.shape == (120, 96, 96, 3) and images.dtype == np.uint8
    assert {len(a["objects"]) for a in annotations} == {1, 2, 3, 4}
    render = [a["render"] for a in annotations]
    assert {r["background"] for r in render} == set(BACKGROUNDS)
    assert {r["antialiased"] for r in render} == {True, False}
    assert {r["overlap"] for r in render} == {True, False}
    assert len({r["native_size"] for r in render}) >= 3
    assert any(r["jpeg_quality"] for r in render) and any(not r["jpeg_quality"] for r in render)
    objects = [o for a in annotations for o in a["objects"]]
    assert {o["fill"] for o in objects} == {"solid", "outline", "outlined"}
    assert {(o["colour"], o["shape"], o["size"]) for o in objects} == {
        (c, s, z) for c in COLOURS for s in SHAPES for z in SIZES
    }
    angles = [o["geometry"]["angle"] for o in objects if o["shape"] == "square"]
    assert max(angles) - min(angles) > 1.0  # rotated, not upright only


def _coverage_box(points: np.ndarray, side: int, k: int = 4) -> list[int]:
    """The tight box of the pixels at least half inside the polygon, by an independent route
    (matplotlib's point-in-polygon test on ``k x k`` samples per pixel)."""
    x0, y0 = (max(int(v) - 2, 0) for v in points.min(axis=0))
    x1, y1 = (min(int(v) + 3, side) for v in points.max(axis=0))
    xs, ys = np.meshgrid(np.arange(x0 * k, x1 * k) + 0.5, np.arange(y0 * k, y1 * k) + 0.5)
    inside = Path(points).contains_points(np.stack([xs.ravel(), ys.ravel()], axis=1) / k)
    cover = inside.reshape(y1 - y0, k, x1 - x0, k).mean(axis=(1, 3))  # (h, w) per pixel
    rows, cols = np.nonzero(cover >= 0.5)
    return [x0 + int(cols.min()), y0 + int(rows.min()), x0 + int(cols.max()) + 1, y0 + int(rows.max()) + 1]


def test_varied_boxes_are_exact(varied):
    """Each stored box is the tight box of the pixels the shape covers at least half, within a pixel
    (the scene may be drawn at another resolution and resampled)."""
    _, annotations = varied
    for ann in annotations:
        for obj in ann["objects"]:
            expected = _coverage_box(shape_outline(obj["shape"], obj["geometry"]), 96)
            assert max(abs(a - b) for a, b in zip(obj["box"], expected)) <= 1, (obj, expected)


def test_varied_objects_have_their_colour(varied):
    """Where a solid, unoccluded object is drawn, the pixel at its centroid has the named colour."""
    images, annotations = varied
    checked = 0
    for image, ann in zip(images, annotations):
        if ann["render"]["overlap"]:
            continue
        for obj in ann["objects"]:
            if obj["fill"] == "outline":
                continue
            x, y = shape_outline(obj["shape"], obj["geometry"]).mean(axis=0)
            pixel = image[int(y), int(x)]
            assert _colour_name(pixel) == obj["colour"], (obj, pixel)
            checked += 1
    assert checked > 50


def _check_captions(annotations: list[dict]) -> None:
    """Every caption names exactly the scene's colour-shape pairs, its words point at the right
    objects, and every stated relation or order holds for the objects' centres."""
    for ann in annotations:
        objects = ann["objects"]
        truth = {(o["colour"], o["shape"]) for o in objects}
        assert len(truth) == len(objects)
        assert len(ann["captions"]) >= 6 and len(set(ann["captions"])) == len(ann["captions"])
        xs = [o["centre"][0] for o in objects]
        for caption, owners in zip(ann["captions"], ann["word_objects"]):
            words = caption.split()
            assert len(words) == len(owners)
            assert set(colour_shape_pairs(words)) == truth and len(colour_shape_pairs(words)) == len(objects)
            assert_words_name_their_objects(words, owners, objects)
            named = [
                owner for word, owner in zip(words, owners) if word in SHAPES
            ]  # objects in caption order
            if len(objects) == 2:
                a, b = (objects[i]["centre"] for i in named)
                text = f" {caption} "
                for relation in ("left of", "right of", "above", "below"):
                    if f" {relation} " in text:
                        assert relation_of(tuple(a), tuple(b)) == relation, caption
                if " on the left " in text:
                    assert a[0] < b[0] and relation_of(tuple(a), tuple(b)) == "left of", caption
                if " at the top " in text:
                    assert a[1] < b[1] and relation_of(tuple(a), tuple(b)) == "above", caption
            elif "left to right" in caption or "right to left" in caption or "there are" in caption:
                order = [xs[i] for i in named]
                expected = sorted(order, reverse="right to left" in caption)
                assert order == expected, caption


def test_varied_captions_are_true_to_the_scene(varied):
    _check_captions(varied[1])


def test_oog_captions_are_true_and_colours_right(oog):
    images, annotations = oog
    assert {len(a["objects"]) for a in annotations} == {1, 2, 3}
    _check_captions(annotations)
    for image, ann in zip(images, annotations):
        for obj in ann["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert _colour_name(image[(y0 + y1) // 2, (x0 + x1) // 2]) == obj["colour"], obj


def test_oog_boxes_hold_every_object_pixel(oog):
    """No saturated (object) pixel lies outside every box; each box's edges touch its object."""
    images, annotations = oog
    for image, ann in zip(images, annotations):
        hsv = np.array([colorsys.rgb_to_hsv(*(p / 255.0)) for p in image.reshape(-1, 3)]).reshape(96, 96, 3)
        saturated = hsv[..., 1] > 0.45
        inside = np.zeros((96, 96), dtype=bool)
        for obj in ann["objects"]:
            x0, y0, x1, y1 = obj["box"]
            inside[y0:y1, x0:x1] = True
            part = saturated[y0:y1, x0:x1]
            tinted = hsv[y0:y1, x0:x1, 1] > 0.25  # partly covered edge pixels included
            if obj["edge"] == 0:  # tight: a coloured pixel within three pixels of each side (sharp tips)
                assert (
                    tinted[:3].any() and tinted[-3:].any() and tinted[:, :3].any() and tinted[:, -3:].any()
                ), obj
            else:  # the dark edge line (unsaturated) lies inside the box
                assert part[1:-1, 1:-1].any()
        assert not (saturated & ~inside).any()


def test_scorer_accepts_every_reference(varied):
    """Every paraphrase, the freer ones included, scores as a caption naming exactly the objects."""
    _, annotations = varied
    scorer = SceneScorer((96, 96))
    for ann in annotations[:40]:
        for caption in ann["captions"]:
            scorer.add(caption.split(), None, ann["objects"])
    scores = scorer.compute()
    assert scores["pairs_correct"] == 1.0 and scores["objects_exact"] == 1.0
    assert scores["unmatched_phrases"] == 0


def test_styles_cache_apart_and_plain_manifest_unchanged(tmp_path):
    plain = generate_scenes(tmp_path / "plain", seed=0, num_train=4, num_val=2, num_test=2)
    assert "style" not in plain["params"]  # caches made before the varied style stay valid
    varied = generate_scenes(tmp_path / "varied", seed=0, num_train=4, num_val=2, num_test=2, style="varied")
    assert varied["params"]["style"] == "varied"
    with pytest.raises(ValueError, match="style"):
        generate_scenes(tmp_path / "x", num_train=2, num_val=2, num_test=2, style="fancy")
    manifest = generate_oog(tmp_path / "oog", num_images=3)
    assert manifest["splits"] == {"test": 3}


def test_data_module_serves_varied_scenes(tmp_path):
    from multiattn.tasks.captioning.data import SceneCaptionData

    data = SceneCaptionData(
        data_dir=str(tmp_path / "v"), num_train=8, num_val=4, num_test=4, batch_size=4, style="varied"
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch.images.shape == (4, 3, 96, 96) and batch.objects is not None
    assert "picture" in data.vocab.to_list() or "shapes" in data.vocab.to_list()
    with pytest.raises(UserError, match="--data.style"):
        SceneCaptionData(data_dir=str(tmp_path / "w"), style="fancy")


def test_outline_geometry():
    """The outline helper: an unrotated square spans exactly its half extents."""
    points = shape_outline("square", {"cx": 50, "cy": 40, "rx": 10, "ry": 8, "angle": 0.0, "apex": 0.0})
    assert points[:, 0].min() == 40 and points[:, 0].max() == 60
    assert points[:, 1].min() == 32 and points[:, 1].max() == 48
    turned = shape_outline(
        "square", {"cx": 0, "cy": 0, "rx": 10, "ry": 10, "angle": math.pi / 4, "apex": 0.0}
    )
    assert math.isclose(turned[:, 0].max(), 10 * math.sqrt(2))


def test_other_image_sizes_and_small_ones_refused():
    images, annotations = generate_varied_split(4, seed=1, image_size=128)
    assert images.shape == (4, 128, 128, 3)
    assert all(0 <= o["box"][0] < o["box"][2] <= 128 for a in annotations for o in a["objects"])
    assert generate_oog_split(2, seed=1, image_size=128)[0].shape == (2, 128, 128, 3)
    for draw in (generate_varied_split, generate_oog_split):
        with pytest.raises(ValueError, match="at least 96"):
            draw(1, seed=0, image_size=64)
