"""Broad embedded digits: fonts found and refused, style variety, determinism, the held-out
families never reaching training data, and the out-of-generator recipe."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil

import numpy as np
import pytest
import torch

from multiattn.tasks.stn.data import STNDataModule
from multiattn.tasks.stn.sources import embedded, fonts
from multiattn.tasks.stn.sources.distort import (
    STYLE_FIELDS,
    DistortionSpec,
    broad_spec,
    distort_digits,
    variety_spec,
)
from multiattn.tasks.stn.sources.fonts import FontFace, discover_fonts, font_face, is_excluded
from multiattn.tasks.stn.sources.glyphs import FONT_FILES, load_handwritten_digits, render_face_digits
from multiattn.tasks.stn.sources.outside import held_out_fonts, outside_digits


def _bundled(name: str) -> str:
    from matplotlib import get_data_path

    return os.path.join(get_data_path(), "fonts", "ttf", name)


@pytest.fixture(scope="module")
def hand():
    return load_handwritten_digits()


@pytest.mark.parametrize(
    ("family", "excluded"),
    [
        ("Liberation Sans", True),
        ("liberation serif", True),
        ("Liberation Sans Narrow", True),
        ("FreeSans", True),
        ("Free Serif", True),
        ("FreeMono", True),
        ("Nimbus Roman", True),
        ("TeX Gyre Heros", True),
        ("Arimo", True),
        ("DejaVu Sans", False),
        ("DejaVu Math TeX Gyre", False),
        ("Freestyle Script", False),
        ("Comic Neue", False),
    ],
)
def test_excluded_by_family_name(family, excluded):
    assert is_excluded(family) is excluded


def test_excluded_family_refused_whatever_its_file_is_called(tmp_path, monkeypatch):
    # Two copies of one bundled font under harmless file names; the file's family name decides.
    for name in ("HandDigits.ttf", "Other.ttf"):
        shutil.copy(_bundled("DejaVuSans-Bold.ttf"), tmp_path / name)
    real = font_face.__wrapped__

    def fake(path: str) -> FontFace | None:
        face = real(path)
        if os.path.basename(path) == "HandDigits.ttf":
            return FontFace(path=path, family="Liberation Sans", style="Bold")
        if os.path.basename(path) == "Other.ttf":
            return FontFace(path=path, family="Study Sans", style="Bold")
        return face

    monkeypatch.setattr(fonts, "font_face", fake)
    faces = discover_fonts([tmp_path], system=False)
    names = {face.family for face in faces}
    assert "Study Sans" in names and not any(is_excluded(n) for n in names)
    assert not any(face.path.endswith("HandDigits.ttf") for face in faces)
    # The renderer refuses an excluded face handed to it directly.
    with pytest.raises(ValueError, match="Liberation Sans"):
        render_face_digits([FontFace(str(tmp_path / "HandDigits.ttf"), "Liberation Sans", "Bold")])


def test_discover_fonts_bundled_only_sorted_and_unique():
    faces = discover_fonts(system=False)
    assert len(faces) == len(FONT_FILES)  # every bundled digit font is a distinct face
    keys = [(face.family, face.style) for face in faces]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert font_face(_bundled("LastResortHE-Regular.ttf")) is None  # one placeholder for every digit
    assert font_face(_bundled("STIXSizOneSymReg.ttf")) is None  # no digits


def test_framed_faces_skipped(tmp_path):
    glyphs = render_face_digits(discover_fonts(system=False)[:2])
    assert len(glyphs) == 20 and set(glyphs.labels.tolist()) == set(range(10))
    assert glyphs.origins is not None and len(set(glyphs.origins.tolist())) == 2


def test_held_out_fonts_never_emitted_by_the_generator(tmp_path, monkeypatch):
    # One bundled file posing as a held-out family, one as a new family, in an extra font folder:
    # the broad cache must contain the new family and never the held-out one.
    shutil.copy(_bundled("DejaVuSerif-Bold.ttf"), tmp_path / "held.ttf")
    shutil.copy(_bundled("DejaVuSansMono-Bold.ttf"), tmp_path / "study.ttf")
    real = font_face.__wrapped__

    def fake(path: str) -> FontFace | None:
        if os.path.basename(path) == "held.ttf":
            return FontFace(path=path, family="FreeSerif", style="Bold")
        if os.path.basename(path) == "study.ttf":
            return FontFace(path=path, family="Study Mono", style="Bold")
        return real(path)

    monkeypatch.setattr(fonts, "font_face", fake)
    monkeypatch.setattr(embedded, "discover_fonts", functools.partial(discover_fonts, system=False))
    spec = broad_spec(DistortionSpec(variant="cluttered"))
    root = embedded.generate_embedded(
        tmp_path / "cache",
        spec,
        sizes=(300, 60, 60),
        seed=1,
        progress=False,
        variety="broad",
        font_dirs=[tmp_path],
    )
    assert root.name == "cluttered-broad"
    manifest = json.loads((root / "manifest.json").read_text())
    origins = {name for split in manifest["splits"].values() for name in split["origins"]}
    assert "Study Mono Bold" in origins and "scikit-learn" in origins
    assert not any(is_excluded(name) for name in origins)
    assert manifest["params"]["fonts"]["faces"] == len(FONT_FILES) + 1


def test_real_held_out_fonts_are_refused_for_training():
    held_out = held_out_fonts()
    if not held_out:
        pytest.skip("no Liberation / FreeFont fonts installed (make fonts)")
    training = {face.path for face in discover_fonts()}
    assert not training & {face.path for face in held_out}


def test_broad_cache_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "discover_fonts", functools.partial(discover_fonts, system=False))
    spec = broad_spec(DistortionSpec(variant="cluttered"))
    roots = [
        embedded.generate_embedded(
            tmp_path / name, spec, sizes=(40, 10, 10), seed=seed, progress=False, variety="broad"
        )
        for name, seed in (("a", 3), ("b", 3), ("c", 4))
    ]
    for name in ("train_images.npy", "train_boxes.npy", "test_images.npy", "val_labels.npy"):
        assert (roots[0] / name).read_bytes() == (roots[1] / name).read_bytes()
    assert (roots[0] / "train_images.npy").read_bytes() != (roots[2] / "train_images.npy").read_bytes()


def test_broad_spec_and_style_variety(hand):
    base = DistortionSpec(variant="cluttered")
    spec = broad_spec(base)
    assert spec.max_rotation == 15.0 and spec.scales == (0.7, 1.35) and spec.clutter_pieces == (2, 10)
    assert not spec.neutral_style() and set(base.neutral_style()) == set(STYLE_FIELDS)
    make = functools.partial(distort_digits, hand.images, hand.labels, num_samples=600, progress=False)
    plain, broad = make(base, seed=0), make(spec, seed=0)
    assert np.array_equal(broad.images, make(spec, seed=0).images)  # deterministic
    # Inversion: about 10% of images have a bright background (median pixel), none without it.
    bright = np.median(broad.images.reshape(600, -1), axis=1) > 127
    assert 0.05 < bright.mean() < 0.16 and not (np.median(plain.images.reshape(600, -1), axis=1) > 127).any()
    # Noise and background: the plain canvases are mostly exact zeros, the broad ones rarely.
    assert (plain.images == 0).mean() > 0.5 > (broad.images == 0).mean()
    # Every box still holds its digit: boxes stay inside the canvas and are not the whole canvas.
    widths = broad.boxes[:, 2] - broad.boxes[:, 0]
    assert (
        (broad.boxes[:, :2] >= -0.5).all()
        and (broad.boxes[:, 2:] <= 59.5).all()
        and (widths < 50).mean() > 0.99
    )


def test_varied_spec_lies_between_standard_and_broad(hand, tmp_path, monkeypatch):
    base = DistortionSpec(variant="cluttered")
    standard, varied, broad = (variety_spec(base, name) for name in ("standard", "varied", "broad"))
    assert standard == base and broad == broad_spec(base)
    assert varied.invert_probability == 0.0 and varied.background_range == broad.background_range
    for name in ("aspect_range", "stroke_range", "blur_range"):
        low, high = getattr(varied, name)
        assert getattr(broad, name)[0] <= low <= getattr(base, name)[0]
        assert getattr(base, name)[1] <= high < getattr(broad, name)[1]
    # Sizes spread the widest in the varied set (the region learns to follow the digit's size).
    assert (
        varied.scales == (0.6, 1.5)
        and varied.scales[0] < broad.scales[0] < broad.scales[1] < varied.scales[1]
    )
    assert 0 < varied.shear < broad.shear and 0 < varied.max_rotation < broad.max_rotation
    with pytest.raises(ValueError, match="unknown variety"):
        variety_spec(base, "wide")
    # Grey, noisy grounds, never inverted: no canvas has a bright median.
    made = distort_digits(hand.images, hand.labels, varied, num_samples=300, seed=0, progress=False)
    assert not (np.median(made.images.reshape(300, -1), axis=1) > 127).any()
    assert (made.images == 0).mean() < 0.5
    # Cached apart from the other varieties, with the font faces of the broad set.
    monkeypatch.setattr(embedded, "discover_fonts", functools.partial(discover_fonts, system=False))
    root = embedded.generate_embedded(
        tmp_path, varied, sizes=(40, 10, 10), seed=0, progress=False, variety="varied"
    )
    manifest = json.loads((root / "manifest.json").read_text())
    assert root.name == "cluttered-varied" and manifest["params"]["fonts"]["faces"] == len(FONT_FILES)


@pytest.mark.parametrize("stroke", [(-1.0, -1.0), (1.0, 1.0), (2.0, 2.0)])
def test_stroke_width_thins_and_thickens(hand, stroke):
    spec = DistortionSpec(variant="plain")
    make = functools.partial(
        distort_digits, hand.images[:50], hand.labels[:50], num_samples=50, seed=0, progress=False
    )
    ink = (make(spec).images > 76).sum()
    varied = (make(dataclasses.replace(spec, stroke_range=stroke)).images > 76).sum()
    assert (varied < ink) if stroke[0] < 0 else (varied > ink)


def test_aspect_and_shear_stretch_the_box(hand):
    spec = DistortionSpec(variant="RTS", rotation=0.0, scale_range=(1.0, 1.0))
    make = functools.partial(
        distort_digits, hand.images, hand.labels, num_samples=200, seed=0, progress=False
    )

    def ratio(digits) -> float:
        boxes = digits.boxes
        return float(np.median((boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])))

    wide = make(dataclasses.replace(spec, aspect_range=(1.6, 1.6)))
    narrow = make(dataclasses.replace(spec, aspect_range=(0.6, 0.6)))
    assert ratio(wide) > 1.4 * ratio(make(spec)) > 1.4 * 1.4 * ratio(narrow) * 0.9


def test_bad_style_ranges_rejected():
    with pytest.raises(ValueError, match="blur_range"):
        DistortionSpec(blur_range=(1.0, 0.5))
    with pytest.raises(ValueError, match="background_range"):
        DistortionSpec(contrast_range=(0.5, 1.0), background_range=(0.0, 0.6))
    with pytest.raises(ValueError, match="variety"):
        STNDataModule(variety="wide")
    with pytest.raises(ValueError, match="embedded source only"):
        STNDataModule(source="mnist", root="x", variety="broad")


def test_outside_digits_deterministic_with_boxes_on_the_ink():
    faces = discover_fonts(system=False)[:3]  # any faces: the benchmark passes the held-out ones
    a = outside_digits(faces, num_samples=120, seed=5)
    b = outside_digits(faces, num_samples=120, seed=5)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.images, outside_digits(faces, num_samples=120, seed=6).images)
    assert a.images.shape == (120, 60, 60) and set(a.labels.tolist()) == set(range(10))
    heights = a.boxes[:, 3] - a.boxes[:, 1]
    assert 12 <= heights.min() and heights.max() <= 36
    # The box holds the digit: its inside is brighter on average than the rest of the canvas.
    images = torch.from_numpy(a.images).float()
    inside = []
    for image, (x0, y0, x1, y1) in zip(images, a.boxes):
        x0, y0, x1, y1 = int(np.ceil(x0)), int(np.ceil(y0)), int(x1), int(y1)
        inside.append(float(image[y0 : y1 + 1, x0 : x1 + 1].mean() > image.mean() * 1.5))
    assert np.mean(inside) > 0.95
    with pytest.raises(ValueError, match="no font faces"):
        outside_digits([], num_samples=1, seed=0)


def test_missing_font_packages_one_message(monkeypatch, caplog):
    faces = discover_fonts(system=False)
    monkeypatch.setattr(embedded, "missing_packages", lambda: ["fonts-lato", "fonts-hack"])
    with caplog.at_level("WARNING", logger=embedded.log.name):
        embedded._report_missing_fonts(faces)
    (record,) = caplog.records
    assert "fonts-lato fonts-hack" in record.getMessage() and "make fonts" in record.getMessage()
    caplog.clear()
    monkeypatch.setattr(embedded, "missing_packages", lambda: [])
    with caplog.at_level("WARNING", logger=embedded.log.name):
        embedded._report_missing_fonts(faces)
    assert not caplog.records


def test_install_fonts_without_root_lists_the_packages(monkeypatch, capsys):
    monkeypatch.setattr(fonts.os, "geteuid", lambda: 1000)
    assert fonts.install_fonts() == 1
    message = capsys.readouterr().err
    assert "fonts-dkg-handwriting" in message and "fonts-liberation" in message
    assert not any(
        is_excluded(name.removeprefix("fonts-")) for ps in fonts.FONT_PACKAGES.values() for name in ps
    )
