"""Varied embedded scenes: the vocabulary of the plain scenes, drawn with far more variety.

The plain scenes (:mod:`multiattn.tasks.captioning.sources.scenes`) draw every object the same way: a solid,
hard-edged, upright shape of one fixed colour per name on a flat background. A model trained on
them learns that generator as much as shapes and colours. These scenes keep the same words
(circle / square / triangle, red / green / blue / yellow, small / large, left of / right of /
above / below) and vary everything the words do not name:

- drawing: anti-aliased (4x supersampled polygons, box-filtered down) or hard-edged (the same
  coverage rounded to 0 or 1, at the image's own size); filled,
  outlined, or filled with an outline of another shade of the same colour name;
- shapes: rotation, aspect jitter, triangles of varying apex; sizes continuous within the
  ``small`` and ``large`` ranges (with a gap between them, so the word stays true);
- colour: each name is a range of hue, saturation and value (:data:`COLOUR_RANGES`), sampled per object;
- background: plain, linear gradient, noise, stripes or checks, always of low saturation so
  that no background pixel has a named colour;
- layout: 1-4 objects, partial overlap in some scenes (a later object may cover a little of an
  earlier one), the scene drawn at one of several resolutions and resampled to ``image_size``;
- pixels: optional sensor noise and JPEG artefacts;
- captions: every paraphrase of the plain grammar plus freer ones (:func:`scene_captions`).

Drawing uses PIL's ``ImageDraw`` (the plain scenes use numpy masks; the evaluation-only renderer,
:mod:`multiattn.tasks.captioning.sources.oog`, uses matplotlib). Everything is drawn from one
``numpy.random.Generator``, so a seed gives identical bytes. Boxes are measured on the final
image: the tight box of the pixels the object covers at least half (exclusive end); relations
come from the shapes' geometric centres and are only stated where they are clear.

Shape legend: ``N`` images, ``S`` image side, ``R`` native (drawing) side in pixels.
"""

from __future__ import annotations

import colorsys
import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from multiattn.tasks.captioning.sources.scenes import COLOURS, SHAPES, SIZES, fill_templates, template_words

__all__ = [
    "COLOUR_RANGES",
    "SIZE_RANGES",
    "VARIED_VERSION",
    "generate_varied_split",
    "place_objects",
    "relation_of",
    "scene_captions",
    "shape_outline",
]

VARIED_VERSION = 1
# Per colour name: hue (degrees, may start below 0 = wrap), saturation, value. Gaps between the
# hue ranges (orange, cyan, purple) keep every sample unambiguous.
COLOUR_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-10.0, 8.0), (0.65, 1.0), (0.55, 1.0)),
    "green": ((95.0, 145.0), (0.5, 1.0), (0.4, 0.85)),
    "blue": ((208.0, 240.0), (0.55, 1.0), (0.5, 1.0)),
    "yellow": ((48.0, 60.0), (0.65, 1.0), (0.82, 1.0)),
}
# Half the larger side of a shape (before rotation), as a share of the image side.
SIZE_RANGES = {"small": (0.07, 0.115), "large": (0.15, 0.21)}
NATIVE_SCALES = (0.75, 1.0, 1.5, 2.0)  # the scene is drawn at image_size * scale, then resampled
COUNT_WEIGHTS = (0.2, 0.3, 0.3, 0.2)  # 1, 2, 3, 4 objects
_SUPERSAMPLE = 4
BACKGROUNDS = ("plain", "gradient", "noise", "stripes", "checks")
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_LONG = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def sample_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    """An RGB colour (float, 0-255) drawn from the hue / saturation / value range of ``name``."""
    (h0, h1), (s0, s1), (v0, v1) = COLOUR_RANGES[name]
    hue = (rng.uniform(h0, h1) % 360.0) / 360.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(s0, s1), rng.uniform(v0, v1))) * 255.0


def _dull_colour(rng: np.random.Generator) -> np.ndarray:
    """A background colour: any hue, saturation at most 0.18 (objects have at least 0.5)."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.18), rng.uniform(0.1, 0.93))) * 255.0


def _background(kind: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(R, R, 3)`` float background of the given kind, every pixel of low saturation."""
    a, b = _dull_colour(rng), _dull_colour(rng)
    ys, xs = np.mgrid[:side, :side].astype(np.float64) / side  # (R, R) each
    angle = rng.uniform(0, math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)  # (R, R)
    if kind == "plain":
        weight = np.zeros((side, side))
    elif kind == "gradient":
        weight = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif kind == "noise":  # smooth blotches: a coarse random grid, bilinearly upsampled, plus grain
        coarse = rng.uniform(0, 1, size=(int(rng.integers(3, 9)),) * 2).astype(np.float32)
        weight = np.asarray(Image.fromarray(coarse, mode="F").resize((side, side), Image.BILINEAR))
        weight = np.clip(weight + rng.normal(0, 0.15, size=(side, side)), 0, 1)
    elif kind == "stripes":
        period = rng.uniform(0.05, 0.2)
        weight = 0.5 + 0.5 * np.sin(2 * math.pi * along / period)
    else:  # checks
        cells = int(rng.integers(4, 13))
        weight = ((np.floor(xs * cells) + np.floor(ys * cells)) % 2).astype(np.float64)
    weight = weight[..., None] * rng.uniform(0.3, 1.0)  # (R, R, 1) limited contrast
    return a * (1 - weight) + b * weight


def shape_outline(shape: str, geometry: dict[str, float]) -> np.ndarray:
    """The shape's outline as ``(K, 2)`` ``(x, y)`` points in pixels of the image it is drawn on.

    ``geometry``: ``cx``, ``cy`` (centre), ``rx``, ``ry`` (half extents before rotation),
    ``angle`` (radians, clockwise on screen), ``apex`` (triangle: the apex's x offset as a share of ``rx``).
    """
    rx, ry = geometry["rx"], geometry["ry"]
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        points = np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)  # (72, 2) an ellipse
    elif shape == "square":
        points = np.array([[-rx, -ry], [rx, -ry], [rx, ry], [-rx, ry]])
    elif shape == "triangle":  # apex up before rotation, base at the bottom
        points = np.array([[geometry["apex"] * rx, -ry], [rx, ry], [-rx, ry]])
    else:
        raise ValueError(f"shape: expected one of {', '.join(SHAPES)}, received {shape!r}")
    c, s = math.cos(geometry["angle"]), math.sin(geometry["angle"])
    rotated = points @ np.array([[c, s], [-s, c]])  # (K, 2)
    return rotated + np.array([geometry["cx"], geometry["cy"]])


def _coverage(points: np.ndarray, side: int, *, hard: bool, width: float | None) -> np.ndarray:
    """``(R, R)`` share of each pixel inside the polygon (or inside its inner band of ``width`` px).

    Drawn with PIL on a crop around the shape, 4 times finer, then box-filtered down
    (``Image.reduce``), so anti-aliased edges are pixel coverage without ringing; ``hard`` rounds
    the coverage to 0 or 1 (aliased edges, the pixels at least half covered). PIL's own 1x fill
    would also paint every pixel an edge touches, a pixel fatter than the shape.
    Pixel ``i`` spans ``[i, i + 1)``; PIL puts pixel centres on integers, hence the ``- 0.5``.
    """
    k = _SUPERSAMPLE
    x0 = max(int(math.floor(points[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(points[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(points[:, 0].max())) + 1, side)
    y1 = min(int(math.ceil(points[:, 1].max())) + 1, side)
    crop = Image.new("L", ((x1 - x0) * k, (y1 - y0) * k), 0)
    scaled = [(float((x - x0) * k - 0.5), float((y - y0) * k - 0.5)) for x, y in points]
    draw = ImageDraw.Draw(crop)
    if width is None:
        draw.polygon(scaled, fill=255)
    else:  # PIL draws a wide polygon outline inside the polygon
        draw.polygon(scaled, outline=255, width=max(1, int(round(width * k))))
    coverage = np.asarray(crop.reduce(k), dtype=np.float32) / 255.0
    mask = np.zeros((side, side), dtype=np.float32)
    mask[y0:y1, x0:x1] = np.round(coverage) if hard else coverage
    return mask


def _extents(points: np.ndarray) -> tuple[float, float, float, float]:
    return (
        float(points[:, 0].min()),
        float(points[:, 1].min()),
        float(points[:, 0].max()),
        float(points[:, 1].max()),
    )


def relation_of(a: tuple[float, float], b: tuple[float, float]) -> str:
    """The relation of centre ``a`` to centre ``b``: the dominant axis decides (y grows downwards)."""
    (xa, ya), (xb, yb) = a, b
    if abs(xa - xb) > abs(ya - yb):
        return "left of" if xa < xb else "right of"
    return "above" if ya < yb else "below"


def place_objects(
    half_sizes: list[tuple[float, float]],
    side: int,
    rng: np.random.Generator,
    *,
    overlap: float = 0.0,
    tries: int = 200,
) -> list[tuple[float, float]] | None:
    """Centres for objects whose boxes have half sides ``half_sizes`` ``(hx, hy)``, or None on failure.

    Boxes stay inside the image. With ``overlap`` 0 they keep a gap; otherwise two boxes may
    intersect by at most that share of the smaller box's area. Two objects: one axis clearly
    dominates (the relation is unambiguous); three or more: the left-to-right order is clear.
    """
    gap = side / 24
    margin = side / 8
    for _ in range(tries):
        centres = [
            (rng.uniform(hx + 0.5, side - hx - 0.5), rng.uniform(hy + 0.5, side - hy - 0.5))
            for hx, hy in half_sizes
        ]
        ok = True
        for i in range(len(centres)):
            for j in range(i + 1, len(centres)):
                (xi, yi), (xj, yj) = centres[i], centres[j]
                (hxi, hyi), (hxj, hyj) = half_sizes[i], half_sizes[j]
                ix = hxi + hxj - abs(xi - xj)  # > 0: the boxes' x ranges intersect
                iy = hyi + hyj - abs(yi - yj)
                if overlap <= 0:
                    ok &= ix <= -gap or iy <= -gap
                elif ix > 0 and iy > 0:
                    ok &= ix * iy <= overlap * 4 * min(hxi * hyi, hxj * hyj)
                if len(centres) == 2:
                    ok &= abs(abs(xi - xj) - abs(yi - yj)) >= margin
                else:
                    ok &= abs(xi - xj) >= margin
        if ok:
            return centres
    return None


def scene_captions(objects: list[dict[str, Any]]) -> tuple[list[str], list[list[int]]]:
    """Every paraphrase of a scene and, per caption and word, the index of the object it names (or -1).

    The plain grammar's paraphrases come first (a model trained on the plain scenes says one of
    them), then freer ones. Objects need ``shape``, ``colour``, ``size`` and ``centre``.
    """

    w = template_words

    def bare(i: int) -> list[tuple[str, int]]:  # "a red circle": no size word
        return [("a", -1), (objects[i]["colour"], i), (objects[i]["shape"], i)]

    n = len(objects)
    if n == 1:
        templates = [
            [0],
            [*w("there is"), 0],
            [*w("an image of"), 0],
            [0, *w("in the picture")],
            [*w("a picture of"), 0],
            [*w("the image shows"), 0],
            [0, *w("on its own")],
            [*w("just"), *bare(0)],
        ]
    elif n == 2:
        relation = relation_of(tuple(objects[0]["centre"]), tuple(objects[1]["centre"]))
        first, second = (0, 1) if relation in ("left of", "above") else (1, 0)
        pair = (
            ("on the left", "on the right")
            if relation in ("left of", "right of")
            else ("at the top", "at the bottom")
        )
        templates = [
            [0, *w(relation), 1],
            [1, *w(_INVERSE[relation]), 0],
            [*w("there is"), 0, *w(_LONG[relation]), 1],
            [0, *w("is " + _LONG[relation]), 1],
            [1, *w("is " + _LONG[_INVERSE[relation]]), 0],
            [first, *w(pair[0] + " and"), second, *w(pair[1])],
            [*w(pair[0]), first, *w("and " + pair[1]), second],
            [*w("two shapes"), *bare(first), *w("and"), *bare(second)],
        ]
    else:
        order = sorted(range(n), key=lambda i: objects[i]["centre"][0])

        def listing(indices: list[int]) -> list:
            return [*indices[:-1], *w("and"), indices[-1]]

        templates = [
            [*listing(order), *w("from left to right")],
            [*w("from left to right"), *listing(order)],
            [*listing(order[::-1]), *w("from right to left")],
            [*w("there are"), *listing(order)],
            [*w("in a row from left to right"), *listing(order)],
            [*w("from right to left"), *listing(order[::-1])],
        ]
    return fill_templates(templates, objects)


def _box(mask: np.ndarray) -> list[int]:
    """Tight ``[x0, y0, x1, y1]`` (exclusive end) of the pixels at least half covered."""
    ys, xs = np.nonzero(mask >= 0.5)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _resize(array: np.ndarray, side: int) -> np.ndarray:
    """Resample a float ``(R, R)`` array to ``(S, S)`` (bilinear, antialiased when shrinking)."""
    if array.shape[0] == side:
        return array
    return np.asarray(
        Image.fromarray(array.astype(np.float32), mode="F").resize((side, side), Image.BILINEAR)
    )


def _scene(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """One varied scene: ``(image (S, S, 3) uint8, annotation)``."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    hard = rng.random() < 0.35  # hard-edged: drawn at the image's own size (no resampling blur)
    scale_choice = NATIVE_SCALES[int(rng.integers(len(NATIVE_SCALES)))]
    native = image_size if hard else int(round(image_size * scale_choice))
    overlap = 0.15 if rng.random() < 0.35 else 0.0
    while True:
        count = int(rng.choice(4, p=COUNT_WEIGHTS)) + 1
        chosen = rng.choice(len(pairs), size=count, replace=False)  # distinct colour-shape pairs
        specs, half_sizes = [], []
        for k in range(count):
            colour, shape = pairs[int(chosen[k])]
            size = SIZES[int(rng.integers(2))]
            r = rng.uniform(*SIZE_RANGES[size]) * native
            squash = rng.uniform(0.7 if shape == "triangle" else 0.82, 1.0)
            rx, ry = (r, r * squash) if rng.random() < 0.5 else (r * squash, r)
            spin = {"circle": math.pi, "square": math.pi / 2, "triangle": 2 * math.pi}[shape]
            geometry = {"cx": 0.0, "cy": 0.0, "rx": rx, "ry": ry, "angle": rng.uniform(0, spin)}
            geometry["apex"] = rng.uniform(-0.4, 0.4) if shape == "triangle" else 0.0
            x0, y0, x1, y1 = _extents(shape_outline(shape, geometry))
            specs.append({"shape": shape, "colour": colour, "size": size, "geometry": geometry})
            half_sizes.append(((x1 - x0) / 2, (y1 - y0) / 2))
        centres = place_objects(half_sizes, native, rng, overlap=overlap)
        if centres is not None:
            break
    background_kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    canvas = _background(background_kind, native, rng)  # (R, R, 3) float
    scale = image_size / native
    objects = []
    for spec, (cx, cy) in zip(specs, centres):
        spec["geometry"].update(cx=cx, cy=cy)
        points = shape_outline(spec["shape"], spec["geometry"])
        solid = _coverage(points, native, hard=hard, width=None)  # (R, R)
        fill = ("solid", "outline", "outlined")[int(rng.integers(3))]
        colour = sample_colour(spec["colour"], rng)
        line = max(1.5, rng.uniform(0.025, 0.05) * native)
        layers = []
        if fill in ("solid", "outlined"):
            layers.append((solid, colour))
        if fill in ("outline", "outlined"):
            edge = colour if fill == "outline" else sample_colour(spec["colour"], rng)
            layers.append((_coverage(points, native, hard=hard, width=line), edge))
        for alpha, rgb in layers:
            canvas = canvas * (1 - alpha[..., None]) + rgb * alpha[..., None]
        geometry = {
            key: value * (scale if key in ("cx", "cy", "rx", "ry") else 1.0)
            for key, value in spec["geometry"].items()
        }
        geometry = {key: round(float(value), 3) for key, value in geometry.items()}
        objects.append(
            {
                "shape": spec["shape"],
                "colour": spec["colour"],
                "size": spec["size"],
                "box": _box(_resize(solid, image_size)),
                "centre": [int(round(geometry["cx"])), int(round(geometry["cy"]))],
                "fill": fill,
                "geometry": geometry,
            }
        )
    image = np.stack([_resize(canvas[..., c], image_size) for c in range(3)], axis=-1)  # (S, S, 3)
    noise = float(rng.uniform(2, 10)) if rng.random() < 0.4 else 0.0
    if noise:
        image = image + rng.normal(0, noise, size=image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    quality = int(rng.integers(20, 90)) if rng.random() < 0.4 else 0
    if quality:  # JPEG artefacts: encode and decode with PIL (deterministic for the same libjpeg)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        image = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    captions, word_objects = scene_captions(objects)
    render = {
        "native_size": native,
        "antialiased": not hard,
        "background": background_kind,
        "overlap": overlap > 0,
        "noise": round(noise, 3),
        "jpeg_quality": quality,
    }
    return image, {"objects": objects, "render": render, "captions": captions, "word_objects": word_objects}


def generate_varied_split(
    num_images: int, *, seed: int, image_size: int = 96, desc: str = "varied scenes"
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw ``num_images`` varied scenes deterministically from ``seed``.

    Returns:
        ``images`` uint8 ``(N, S, S, 3)`` and one annotation per image: ``objects`` (each with
        ``shape``, ``colour``, ``size``, ``box`` ``[x0, y0, x1, y1]`` exclusive end, ``centre``,
        ``fill`` and the ``geometry`` of :func:`shape_outline` in image pixels), ``render`` (how the
        scene was drawn), ``captions`` and ``word_objects`` (as the plain scenes).
    """
    if image_size < 96:
        raise ValueError(f"image_size: expected at least 96, received {image_size}")
    rng = np.random.default_rng(seed)
    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)  # (N, S, S, 3)
    annotations = []
    for n in tqdm(range(num_images), desc=desc, unit="img", leave=False, mininterval=1.0):
        images[n], annotation = _scene(rng, image_size)
        annotations.append(annotation)
    return images, annotations
