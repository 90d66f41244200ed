"""The out-of-generator evaluation split: digits drawn by someone else, for evaluation only.

A second recipe, sharing no code path with :mod:`.distort` and no font with training: each digit
is typeset with Pillow's ``ImageDraw.text`` in a held-out family (Liberation or GNU FreeFont,
which the training generator refuses, :mod:`.fonts`) at a random pixel size, rotated with
``Image.rotate`` and pasted at a random place; the clutter is strokes drawn with ``ImageDraw``
(line segments, arcs, dots) instead of fragments of other digits; then a background level, ink
intensity and pixel noise of its own. The training data are never made this way, so accuracy
here measures what a model learnt about digits rather than about its generator.

Each image keeps its digit's box, measured on the digit's own layer before clutter, in the same
pixel convention as the training data (pixel ``i``'s centre at ``i``, the box on outer pixel edges).

Shape legend: ``M`` images, ``C`` canvas side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from multiattn.tasks.stn.sources.distort import DistortedDigits
from multiattn.tasks.stn.sources.fonts import HELD_OUT_FAMILIES, FontFace, discover_fonts, is_excluded

__all__ = ["held_out_fonts", "outside_digits"]

_INK_THRESHOLD = 0.3  # as the training boxes (distort.ink_boxes)


def held_out_fonts(font_dirs: Iterable[str | Path] = ()) -> list[FontFace]:
    """Faces of the held-out families (Liberation, FreeFont) found on this machine (sorted)."""
    return [
        face for face in discover_fonts(font_dirs, excluded=()) if is_excluded(face.family, HELD_OUT_FAMILIES)
    ]


def _stroke_clutter(draw, rng: np.random.Generator, canvas: int, count: int) -> None:
    """Line segments, arcs and dots at random places (the training clutter is digit fragments)."""
    for _ in range(count):
        shade = int(rng.uniform(0.35, 0.9) * 255)
        width = int(rng.integers(1, 3))
        kind = rng.integers(0, 3)
        x, y = rng.uniform(0, canvas, size=2)
        length = rng.uniform(3, 9)
        if kind == 0:
            angle = rng.uniform(0, np.pi)
            dx, dy = length * np.cos(angle), length * np.sin(angle)
            draw.line([(x - dx / 2, y - dy / 2), (x + dx / 2, y + dy / 2)], fill=shade, width=width)
        elif kind == 1:
            start = rng.uniform(0, 360)
            draw.arc(
                [x - length / 2, y - length / 2, x + length / 2, y + length / 2],
                start,
                start + rng.uniform(60, 200),
                fill=shade,
                width=width,
            )
        else:
            radius = rng.uniform(0.8, 2.0)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=shade)


def outside_digits(
    faces: Sequence[FontFace],
    *,
    num_samples: int,
    seed: int,
    canvas: int = 60,
    digit_height: tuple[float, float] = (14.0, 30.0),
    max_rotation: float = 12.0,
    clutter: tuple[int, int] = (3, 9),
    background: tuple[float, float] = (0.0, 0.15),
    ink: tuple[float, float] = (0.7, 1.0),
    noise: tuple[float, float] = (0.0, 0.04),
) -> DistortedDigits:
    """Draw ``num_samples`` light-on-dark digits on ``canvas`` x ``canvas`` images.

    Deterministic for a given seed and font files.

    Args:
        faces: the fonts to typeset with (:func:`held_out_fonts` for the benchmark).
        num_samples: ``M``.
        seed: random seed.
        canvas: image side.
        digit_height: range of the digit's ink height in pixels (uniform).
        max_rotation: maximum absolute rotation in degrees.
        clutter: (min, max) clutter strokes per image.
        background: range of the background level; ink: range of the digit's intensity;
            noise: range of the Gaussian pixel-noise std (all in [0, 1]).

    Returns:
        :class:`.distort.DistortedDigits`: ``images (M, C, C)`` uint8, ``labels``, ``boxes``
        ``(M, 4)`` float32, ``sources`` (the index of the face in ``faces``).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not faces:
        raise ValueError("outside_digits: no font faces to draw with")
    rng = np.random.default_rng(seed)
    images = np.empty((num_samples, canvas, canvas), dtype=np.uint8)
    boxes = np.empty((num_samples, 4), dtype=np.float32)
    labels = rng.integers(0, 10, size=num_samples)
    sources = rng.integers(0, len(faces), size=num_samples)
    for index in range(num_samples):
        face, digit = faces[int(sources[index])], str(int(labels[index]))
        height = rng.uniform(*digit_height)
        # Digits are about 0.7 em tall in these families: size the font so the ink is `height`.
        font = ImageFont.truetype(face.path, size=max(6, round(height / 0.7)))
        left, top, right, bottom = font.getbbox(digit)
        glyph = Image.new("L", (right - left + 8, bottom - top + 8), 0)
        ImageDraw.Draw(glyph).text((4 - left, 4 - top), digit, fill=255, font=font)
        glyph = glyph.rotate(rng.uniform(-max_rotation, max_rotation), resample=Image.BICUBIC, expand=True)
        layer = np.asarray(glyph, dtype=np.float32) / 255.0
        rows, cols = (
            np.flatnonzero((layer > _INK_THRESHOLD).any(1)),
            np.flatnonzero((layer > _INK_THRESHOLD).any(0)),
        )
        layer = layer[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        if max(layer.shape) > canvas:  # a very tall rotated digit: shrink to fit
            scale = canvas / max(layer.shape)
            small = Image.fromarray((layer * 255).astype(np.uint8)).resize(
                (max(1, int(layer.shape[1] * scale)), max(1, int(layer.shape[0] * scale))), Image.BILINEAR
            )
            layer = np.asarray(small, dtype=np.float32) / 255.0
        h, w = layer.shape
        y0, x0 = int(rng.integers(0, canvas - h + 1)), int(rng.integers(0, canvas - w + 1))
        digit_layer = np.zeros((canvas, canvas), dtype=np.float32)
        digit_layer[y0 : y0 + h, x0 : x0 + w] = layer
        ink_rows = np.flatnonzero((digit_layer > _INK_THRESHOLD).any(1))
        ink_cols = np.flatnonzero((digit_layer > _INK_THRESHOLD).any(0))
        boxes[index] = (ink_cols[0] - 0.5, ink_rows[0] - 0.5, ink_cols[-1] + 0.5, ink_rows[-1] + 0.5)
        strokes = Image.new("L", (canvas, canvas), 0)
        _stroke_clutter(ImageDraw.Draw(strokes), rng, canvas, int(rng.integers(clutter[0], clutter[1] + 1)))
        picture = np.maximum(digit_layer * rng.uniform(*ink), np.asarray(strokes, dtype=np.float32) / 255.0)
        ground = rng.uniform(*background)
        picture = ground + (1.0 - ground) * picture + rng.normal(0.0, rng.uniform(*noise), picture.shape)
        images[index] = np.round(np.clip(picture, 0.0, 1.0) * 255.0).astype(np.uint8)
    return DistortedDigits(
        images=images, labels=labels.astype(np.int64), boxes=boxes, sources=sources.astype(np.int64)
    )
