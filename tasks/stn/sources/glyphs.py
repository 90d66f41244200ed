"""Source digits: real handwriting from scikit-learn and digits rendered from matplotlib's fonts.

The spatial transformer paper (Jaderberg et al. 2015, section 4.1) distorts and clutters MNIST.
Nothing may be downloaded here, so the embedded default starts from two offline sources:

- scikit-learn's ``load_digits``: 1,797 real handwritten digits (UCI optdigits), 8x8, 17 grey
  levels. They are upsampled smoothly (bicubic) and sharpened with a contrast curve, so strokes
  look like MNIST's anti-aliased pen rather than 8x8 blocks.
- the TrueType fonts matplotlib ships (DejaVu Sans / Serif / Mono with bold and oblique variants,
  STIX, Computer Modern), rendered with FreeType through ``matplotlib.ft2font``;
- for the broad digit set, every usable font face on the machine (:mod:`.fonts`: dozens of
  families once ``make fonts`` has run), the held-out families (Liberation, FreeFont) refused.

Every source glyph is normalised the MNIST way: the ink's bounding box is scaled to fit a 20x20
box (aspect kept) and centred in a 28x28 canvas, light digit on a dark background, ``uint8``.
``group`` identifies a source image (one scikit-learn sample, or one font/digit pair) so that
train / val / test never share one.

Shape legend: ``N`` number of glyphs, ``H, W`` glyph size (28, 28).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from multiattn.tasks.stn.sources.fonts import FontFace, is_excluded

__all__ = [
    "GLYPH_SIZE",
    "FONT_FILES",
    "SourceGlyphs",
    "normalize_glyph",
    "render_font_digits",
    "render_face_digits",
    "VARIETIES",
    "load_handwritten_digits",
    "load_source_glyphs",
    "split_groups",
]

GLYPH_SIZE = 28
# "standard": scikit-learn's handwriting + matplotlib's 21 fonts; "varied" and "broad": + every
# usable system font ("varied" with milder styles than "broad", tasks/stn/sources/distort.py).
VARIETIES = ("standard", "varied", "broad")
_INK_BOX = 20  # MNIST fits the digit's bounding box in 20x20, centred in 28x28.

# Fonts bundled with matplotlib that contain the ten ASCII digits as ordinary glyphs (the STIX
# size variants, cmex/cmsy/cmmi and LastResort map digits to symbols or old-style figures).
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)


@dataclass(frozen=True)
class SourceGlyphs:
    """Normalised source digits.

    Attributes:
        images: ``(N, 28, 28)`` uint8, light digit on a dark background.
        labels: ``(N,)`` int64 digit 0-9.
        groups: ``(N,)`` int64 source identity; images sharing a group go to the same split.
        kinds: ``(N,)`` int64, 0 = handwritten (scikit-learn), 1 = font.
        origins: ``(N,)`` str, where each glyph came from: ``"scikit-learn"`` or the font face's
            ``"family style"``; ``None`` when not tracked.
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    kinds: np.ndarray
    origins: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> SourceGlyphs:
        origins = None if self.origins is None else self.origins[index]
        return SourceGlyphs(
            self.images[index], self.labels[index], self.groups[index], self.kinds[index], origins
        )


def normalize_glyph(image: np.ndarray, *, threshold: float = 0.1) -> np.ndarray:
    """Fit a glyph's ink into 20x20 (aspect kept) centred in 28x28, the MNIST normalisation.

    Args:
        image: ``(h, w)`` float in [0, 1] (any size), light ink on dark.
        threshold: intensity above which a pixel counts as ink when finding the bounding box.

    Returns:
        ``(28, 28)`` uint8.
    """
    ink = image > threshold
    if not ink.any():
        raise ValueError("glyph has no ink")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = _INK_BOX / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    tensor = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]  # (1, 1, h, w)
    # antialias=True averages when shrinking (large font renders) and interpolates when enlarging.
    resized = F.interpolate(tensor, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    out = np.zeros((GLYPH_SIZE, GLYPH_SIZE), dtype=np.float32)
    top, left = (GLYPH_SIZE - new_h) // 2, (GLYPH_SIZE - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized[0, 0].clamp(0, 1).numpy()
    return np.round(out * 255.0).astype(np.uint8)


def render_font_digits(font_files: tuple[str, ...] = FONT_FILES, *, pixel_size: int = 64) -> SourceGlyphs:
    """Render the digits 0-9 in each font.

    Args:
        font_files: file names under matplotlib's ``mpl-data/fonts/ttf``.
        pixel_size: FreeType rendering size before normalising to 20x20 (large, so the downscale
            gives smooth anti-aliased strokes).

    Returns:
        ``SourceGlyphs`` with ``10 * len(font_files)`` images; group = font index * 10 + digit.
    """
    from matplotlib import ft2font, get_data_path

    font_dir = os.path.join(get_data_path(), "fonts", "ttf")
    images, labels, groups = [], [], []
    for font_index, name in enumerate(font_files):
        font = ft2font.FT2Font(os.path.join(font_dir, name))
        for digit in range(10):
            font.set_size(pixel_size, 72)  # 72 dpi: size in points == size in pixels
            font.set_text(str(digit), 0.0)
            font.draw_glyphs_to_bitmap(antialiased=True)
            bitmap = np.asarray(font.get_image(), dtype=np.float32) / 255.0  # (h, w)
            images.append(normalize_glyph(bitmap))
            labels.append(digit)
            groups.append(font_index * 10 + digit)
    count = len(labels)
    return SourceGlyphs(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        groups=np.asarray(groups, dtype=np.int64),
        kinds=np.ones(count, dtype=np.int64),
    )


def load_handwritten_digits(*, upsample: int = 32) -> SourceGlyphs:
    """scikit-learn's 8x8 handwritten digits, upsampled smoothly and MNIST-normalised.

    Args:
        upsample: side of the bicubic upsampling before normalising (a larger side keeps curves
            round when the 8x8 grid is blown up).

    Returns:
        ``SourceGlyphs`` of 1,797 images; group = the sample's index.
    """
    from multiattn.extras import require

    digits = require("sklearn.datasets", "the embedded handwritten digits").load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    # Pad one dark pixel around so bicubic does not smear ink into the border.
    small = F.pad(small, (1, 1, 1, 1))  # (N, 1, 10, 10)
    big = F.interpolate(small, size=(upsample, upsample), mode="bicubic", align_corners=False)
    big = big[:, 0].clamp(0, 1).numpy()  # (N, upsample, upsample)
    # A smooth-step contrast curve turns the blurry blobs into strokes with soft edges.
    big = np.clip((big - 0.2) / 0.5, 0.0, 1.0)
    big = big * big * (3.0 - 2.0 * big)
    images = np.stack([normalize_glyph(img) for img in big])
    count = images.shape[0]
    return SourceGlyphs(
        images=images,
        labels=digits.target.astype(np.int64),
        groups=np.arange(count, dtype=np.int64),
        kinds=np.zeros(count, dtype=np.int64),
    )


def _framed(digits: np.ndarray, share: float = 0.25) -> bool:
    """Whether every digit of a face has ink on at least ``share`` of the border of its 20x20 ink
    box: digits drawn inside a frame (keycap and inverted-box fonts) rather than digit shapes.
    Measured: framed faces 0.3-0.4, every plain face at most 0.16."""
    lo, hi = (GLYPH_SIZE - _INK_BOX) // 2, (GLYPH_SIZE + _INK_BOX) // 2 - 1
    edges = np.stack(
        [
            digits[:, lo, lo : hi + 1],
            digits[:, hi, lo : hi + 1],
            digits[:, lo : hi + 1, lo],
            digits[:, lo : hi + 1, hi],
        ],
        axis=1,
    )  # (10, 4, 20)
    return bool((edges.reshape(len(digits), -1) > 127).mean(axis=1).min() >= share)


def render_face_digits(faces: Sequence[FontFace], *, pixel_size: int = 64) -> SourceGlyphs:
    """Render the digits 0-9 in each font face (the broad digit set's fonts).

    Refuses (``ValueError``) any face of an excluded family (:func:`.fonts.is_excluded`): those
    are kept for the out-of-generator evaluation, and must never reach training data. Skips faces
    with a digit that draws no ink, or whose digits all sit in a frame (:func:`_framed`).

    Returns:
        ``SourceGlyphs`` with 10 images per rendered face; group = face index * 10 + digit;
        ``origins`` the face names.
    """
    from matplotlib import ft2font

    refused = [face.name for face in faces if is_excluded(face.family)]
    if refused:
        raise ValueError(f"font faces of excluded families (kept for evaluation): {', '.join(refused)}")
    images, labels, groups, origins = [], [], [], []
    for face_index, face in enumerate(faces):
        font = ft2font.FT2Font(face.path)
        digits = []
        for digit in range(10):
            font.set_size(pixel_size, 72)  # 72 dpi: size in points == size in pixels
            font.set_text(str(digit), 0.0)
            font.draw_glyphs_to_bitmap(antialiased=True)
            bitmap = np.asarray(font.get_image(), dtype=np.float32) / 255.0  # (h, w)
            if not (bitmap > 0.1).any():
                break
            digits.append(normalize_glyph(bitmap))
        if len(digits) < 10 or _framed(np.stack(digits)):
            continue  # a digit without ink, or digits drawn inside a frame (keycaps, inverted boxes)
        images.extend(digits)
        labels.extend(range(10))
        groups.extend(face_index * 10 + digit for digit in range(10))
        origins.extend([face.name] * 10)
    count = len(labels)
    return SourceGlyphs(
        images=np.stack(images).reshape(count, GLYPH_SIZE, GLYPH_SIZE),
        labels=np.asarray(labels, dtype=np.int64),
        groups=np.asarray(groups, dtype=np.int64),
        kinds=np.ones(count, dtype=np.int64),
        origins=np.asarray(origins, dtype=str),
    )


def load_source_glyphs(variety: str = "standard", faces: Sequence[FontFace] = ()) -> SourceGlyphs:
    """Handwritten digits followed by font digits; groups made unique across both.

    Args:
        variety: ``"standard"``: matplotlib's 21 :data:`FONT_FILES`; ``"varied"`` or ``"broad"``:
            ``faces`` (:func:`.fonts.discover_fonts`), rendered by :func:`render_face_digits`.
        faces: the varied / broad sets' font faces.
    """
    if variety not in VARIETIES:
        raise ValueError(f"unknown variety {variety!r}; valid varieties: {', '.join(VARIETIES)}")
    hand = load_handwritten_digits()
    fonts = render_font_digits() if variety == "standard" else render_face_digits(faces)
    offset = int(hand.groups.max()) + 1
    origins = None
    if fonts.origins is not None:
        origins = np.concatenate(
            [np.full(len(hand), "scikit-learn", dtype=fonts.origins.dtype), fonts.origins]
        )
    return SourceGlyphs(
        images=np.concatenate([hand.images, fonts.images]),
        labels=np.concatenate([hand.labels, fonts.labels]),
        groups=np.concatenate([hand.groups, fonts.groups + offset]),
        kinds=np.concatenate([hand.kinds, fonts.kinds]),
        origins=origins,
    )


def split_groups(
    glyphs: SourceGlyphs, fractions: tuple[float, float, float], *, seed: int
) -> dict[str, SourceGlyphs]:
    """Split source glyphs into train / val / test by group, stratified by kind and label.

    Every (kind, label) stratum is shuffled and cut by ``fractions``, so each split has
    handwriting and fonts of every digit, and no source image is in two splits.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions: expected three non-negative numbers summing to 1, received {fractions}")
    rng = np.random.default_rng(seed)
    assignment = {}  # group -> split index
    for kind in np.unique(glyphs.kinds):
        for label in range(10):
            members = np.unique(glyphs.groups[(glyphs.kinds == kind) & (glyphs.labels == label)])
            members = rng.permutation(members)
            cut1 = round(len(members) * fractions[0])
            cut2 = cut1 + round(len(members) * fractions[1])
            for position, group in enumerate(members):
                assignment[int(group)] = 0 if position < cut1 else (1 if position < cut2 else 2)
    split_of = np.array([assignment[int(g)] for g in glyphs.groups])
    return {
        name: glyphs.subset(np.flatnonzero(split_of == i)) for i, name in enumerate(("train", "val", "test"))
    }
