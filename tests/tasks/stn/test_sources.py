"""Embedded digit generation: glyphs, splits, distortions, clutter, boxes, the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multiattn.tasks.stn.sources.distort import VARIANTS, DistortionSpec, distort_digits, ink_boxes
from multiattn.tasks.stn.sources.embedded import generate_embedded, load_split
from multiattn.tasks.stn.sources.glyphs import (
    FONT_FILES,
    load_handwritten_digits,
    load_source_glyphs,
    normalize_glyph,
    render_font_digits,
    split_groups,
)


@pytest.fixture(scope="module")
def glyphs():
    return load_source_glyphs()


def test_sources_are_mnist_like(glyphs):
    assert glyphs.images.shape[1:] == (28, 28) and glyphs.images.dtype == np.uint8
    assert len(glyphs) == 1797 + 10 * len(FONT_FILES)
    assert set(np.unique(glyphs.labels)) == set(range(10))
    # Light digit on a dark background, ink inside the central 20x20 box.
    assert glyphs.images[:, :3].max() == 0 and glyphs.images[:, -3:].max() == 0
    assert (glyphs.images.reshape(len(glyphs), -1).max(axis=1) > 200).all()
    assert len(np.unique(glyphs.groups)) == len(glyphs)


def test_font_digits_differ_per_digit():
    fonts = render_font_digits(FONT_FILES[:1])
    flat = fonts.images.reshape(10, -1).astype(np.int32)
    distances = np.abs(flat[:, None] - flat[None]).sum(-1)
    assert (distances[~np.eye(10, dtype=bool)] > 1000).all()  # ten distinct glyphs
    assert fonts.labels.tolist() == list(range(10))


def test_handwritten_upsampled_smoothly():
    hand = load_handwritten_digits()
    levels = len(np.unique(hand.images[:50]))
    assert levels > 100  # smooth grey ramps, not 17 block levels


def test_normalize_glyph_rejects_empty():
    with pytest.raises(ValueError, match="no ink"):
        normalize_glyph(np.zeros((10, 10), np.float32))


def test_splits_share_no_source(glyphs):
    splits = split_groups(glyphs, (0.7, 0.15, 0.15), seed=3)
    groups = [set(splits[name].groups.tolist()) for name in ("train", "val", "test")]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert sum(len(g) for g in groups) == len(glyphs)
    for name in ("train", "val", "test"):
        part = splits[name]
        assert set(np.unique(part.labels)) == set(range(10)) and set(np.unique(part.kinds)) == {0, 1}
    with pytest.raises(ValueError, match="fractions"):
        split_groups(glyphs, (0.5, 0.5, 0.5), seed=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_shapes_and_boxes(glyphs, variant):
    spec = DistortionSpec(variant=variant)
    made = distort_digits(
        glyphs.images[:64], glyphs.labels[:64], spec, num_samples=40, seed=1, progress=False
    )
    side = spec.canvas
    assert made.images.shape == (40, side, side) and made.images.dtype == np.uint8
    assert made.labels.tolist() == glyphs.labels[:64][made.sources].tolist()
    x0, y0, x1, y1 = made.boxes.T
    assert (x1 > x0).all() and (y1 > y0).all()
    assert (x0 >= -0.5).all() and (x1 <= side - 0.5).all()
    if variant != "cluttered":
        # Without clutter, every bright pixel lies inside the digit's box.
        for image, (bx0, by0, bx1, by1) in zip(made.images, made.boxes):
            ys, xs = np.nonzero(image > 0.3 * 255 + 1)
            assert xs.min() >= bx0 and xs.max() <= bx1 and ys.min() >= by0 and ys.max() <= by1


def test_rotation_and_identity(glyphs):
    def one_per_glyph(variant: str) -> np.ndarray:
        spec = DistortionSpec(variant=variant)
        made = distort_digits(
            glyphs.images[:8],
            glyphs.labels[:8],
            spec,
            num_samples=8,
            seed=0,
            progress=False,
            one_per_source=True,
        )
        return made.images.astype(int)

    # The identity warp reproduces the glyph (bilinear at pixel centres is exact).
    assert np.abs(one_per_glyph("plain") - glyphs.images[:8].astype(int)).max() <= 1
    assert np.abs(one_per_glyph("R") - glyphs.images[:8].astype(int)).mean() > 5


def test_cluttered_has_distractors_outside_the_box(glyphs):
    spec = DistortionSpec(variant="cluttered", clutter_pieces=(6, 6))
    made = distort_digits(glyphs.images, glyphs.labels, spec, num_samples=32, seed=2, progress=False)
    outside = 0
    for image, (x0, y0, x1, y1) in zip(made.images, made.boxes):
        mask = np.ones_like(image, dtype=bool)
        mask[int(np.ceil(y0)) : int(y1) + 1, int(np.ceil(x0)) : int(x1) + 1] = False
        outside += int((image[mask] > 80).any())
    assert outside >= 28  # nearly every canvas has clutter away from the digit
    none = distort_digits(
        glyphs.images,
        glyphs.labels,
        DistortionSpec(variant="cluttered", clutter_pieces=(0, 0)),
        num_samples=8,
        seed=2,
        progress=False,
    )
    recomputed = ink_boxes(__import__("torch").from_numpy(none.images).float() / 255.0).numpy()
    assert np.allclose(recomputed, none.boxes, atol=1.0)


def test_generator_deterministic(glyphs):
    spec = DistortionSpec(variant="cluttered")
    a = distort_digits(glyphs.images, glyphs.labels, spec, num_samples=50, seed=7, progress=False)
    b = distort_digits(glyphs.images, glyphs.labels, spec, num_samples=50, seed=7, progress=False)
    c = distort_digits(glyphs.images, glyphs.labels, spec, num_samples=50, seed=8, progress=False)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.images, c.images)


def test_one_per_source_checks_count(glyphs):
    with pytest.raises(ValueError, match="one_per_source"):
        distort_digits(
            glyphs.images[:4],
            glyphs.labels[:4],
            DistortionSpec(variant="R"),
            num_samples=5,
            seed=0,
            one_per_source=True,
        )
    with pytest.raises(ValueError, match="unknown variant"):
        DistortionSpec(variant="Q")


def test_embedded_cache_deterministic_and_regenerated(tmp_path):
    spec = DistortionSpec(variant="cluttered")
    root_a = generate_embedded(tmp_path / "a", spec, sizes=(30, 10, 10), seed=5, progress=False)
    root_b = generate_embedded(tmp_path / "b", spec, sizes=(30, 10, 10), seed=5, progress=False)
    root_c = generate_embedded(tmp_path / "c", spec, sizes=(30, 10, 10), seed=6, progress=False)
    for name in ("train_images.npy", "test_boxes.npy", "val_labels.npy"):
        assert (root_a / name).read_bytes() == (root_b / name).read_bytes()
    assert (root_a / "train_images.npy").read_bytes() != (root_c / "train_images.npy").read_bytes()
    train, test = load_split(root_a, "train"), load_split(root_a, "test")
    assert train["images"].shape == (30, 60, 60) and test["boxes"].shape == (10, 4)
    assert not set(train["sources"].tolist()) & set(test["sources"].tolist())
    manifest = json.loads((root_a / "manifest.json").read_text())
    assert manifest["splits"]["train"]["images"] == 30
    # A truncated file is detected and the cache is rebuilt identically.
    original = (root_a / "train_images.npy").read_bytes()
    (root_a / "train_images.npy").write_bytes(original[:100])
    generate_embedded(tmp_path / "a", spec, sizes=(30, 10, 10), seed=5, progress=False)
    assert (root_a / "train_images.npy").read_bytes() == original
