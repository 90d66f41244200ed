"""Embedded captioning data: procedurally drawn scenes of coloured shapes, with aligned captions.

Every image shows one to three solid shapes (circle, square, triangle; red, green, blue,
yellow; small or large) on a plain background whose colour varies. Each image carries several
paraphrased reference captions from a small grammar, each object's box, and for every caption
word the index of the object it names (-1 for function words). So where a captioner's attention
looks while it says "red" or "circle" can be scored against where the red circle is — the check
Show, Attend and Tell (Xu et al. 2015) could only make by eye on COCO.

Nothing is downloaded: a split is a uint8 ``(N, S, S, 3)`` ``.npy`` array plus a JSON list of
annotations, generated deterministically from a seed and cached through
:func:`multiattn.datacache.cached_generate` (regenerated when missing or corrupt).

The ``varied`` style (:mod:`multiattn.tasks.captioning.sources.varied`) draws the same vocabulary with far
more variety; :func:`generate_scenes` caches either style.

Shape legend: ``N`` images, ``S`` image side in pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from multiattn.datacache import cached_generate

__all__ = [
    "SHAPES",
    "COLOURS",
    "SIZES",
    "RELATIONS",
    "GENERATOR_VERSION",
    "STYLES",
    "generate_split",
    "generate_scenes",
    "load_scene_split",
    "colour_shape_pairs",
]

GENERATOR_VERSION = 1
SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 225),
    "yellow": (235, 205, 35),
}
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below")
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_LONG = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
STYLES = ("plain", "varied")


def _half_extent(size: str, rng: np.random.Generator, image_size: int) -> int:
    """Half the side of an object's box: small ~ 8-11 % of the image side, large ~ 16-20 %."""
    low, high = (0.08, 0.11) if size == "small" else (0.16, 0.20)
    return int(round(rng.uniform(low, high) * image_size))


def _place(radii: list[int], rng: np.random.Generator, image_size: int) -> list[tuple[int, int]] | None:
    """Centres for objects of half-extents ``radii``: boxes apart, relations unambiguous; None on failure."""
    gap = max(2, image_size // 24)
    margin = max(8, image_size // 8)  # how clearly one axis must dominate / objects must be ordered
    for _ in range(200):
        centres = [
            (int(rng.integers(r + 1, image_size - r - 1)), int(rng.integers(r + 1, image_size - r - 1)))
            for r in radii
        ]
        ok = True
        for i in range(len(radii)):
            for j in range(i + 1, len(radii)):
                (xi, yi), (xj, yj) = centres[i], centres[j]
                apart = abs(xi - xj) >= radii[i] + radii[j] + gap or abs(yi - yj) >= radii[i] + radii[j] + gap
                if not apart:
                    ok = False
                if len(radii) == 2 and abs(abs(xi - xj) - abs(yi - yj)) < margin:
                    ok = False  # "left of" vs "above" must be clear
                if len(radii) == 3 and abs(xi - xj) < margin:
                    ok = False  # the left-to-right order must be clear
        if ok:
            return centres
    return None


def _draw(image: np.ndarray, shape: str, centre: tuple[int, int], radius: int, colour: np.ndarray) -> None:
    """Paint one solid shape in place with vectorised masks over the image grid."""
    side = image.shape[0]
    cx, cy = centre
    ys, xs = np.ogrid[:side, :side]  # (S, 1), (1, S)
    if shape == "circle":
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
    elif shape == "square":
        mask = (np.abs(xs - cx) <= radius) & (np.abs(ys - cy) <= radius)
    else:  # triangle pointing up, filling its box: half-width grows linearly from apex to base
        top = cy - radius
        rel = (ys - top) / max(2 * radius, 1)  # (S, 1) 0 at the apex, 1 at the base
        mask = (ys >= top) & (ys <= cy + radius) & (np.abs(xs - cx) <= rel * radius + 0.5)
    image[mask] = colour


def template_words(text: str) -> list[tuple[str, int]]:
    """The words of ``text`` as parts of a caption template that name no object (owner ``-1``)."""
    return [(w, -1) for w in text.split()]


def fill_templates(
    templates: list[list[tuple[str, int] | int]], objects: list[dict[str, Any]]
) -> tuple[list[str], list[list[int]]]:
    """Each template's caption and the object index every word names (``-1``: none).

    A part is a ``(word, owner)`` pair or an object index, which becomes ``a <size> <colour>
    <shape>`` of that object (the article names no object).
    """
    captions, alignments = [], []
    for template in templates:
        tokens: list[str] = []
        owners: list[int] = []
        for part in template:
            if isinstance(part, int):
                obj = objects[part]
                tokens += ["a", obj["size"], obj["colour"], obj["shape"]]
                owners += [-1, part, part, part]
            else:
                tokens.append(part[0])
                owners.append(part[1])
        captions.append(" ".join(tokens))
        alignments.append(owners)
    return captions, alignments


def _captions(objects: list[dict[str, Any]]) -> tuple[list[str], list[list[int]]]:
    """Paraphrased references and, for each, the object index every word names."""
    templates: list[list[tuple[str, int] | int]] = []  # words with object -1, or an object index
    words = template_words
    if len(objects) == 1:
        templates = [[0], [*words("there is"), 0], [*words("an image of"), 0], [0, *words("in the picture")]]
    elif len(objects) == 2:
        (xa, ya), (xb, yb) = objects[0]["centre"], objects[1]["centre"]
        if abs(xa - xb) > abs(ya - yb):
            relation = "left of" if xa < xb else "right of"
        else:
            relation = "above" if ya < yb else "below"
        templates = [
            [0, *words(relation), 1],
            [1, *words(_INVERSE[relation]), 0],
            [*words("there is"), 0, *words(_LONG[relation]), 1],
        ]
    else:
        a, b, c = sorted(range(3), key=lambda i: objects[i]["centre"][0])
        templates = [
            [a, b, *words("and"), c, *words("from left to right")],
            [*words("from left to right"), a, b, *words("and"), c],
            [c, b, *words("and"), a, *words("from right to left")],
        ]
    return fill_templates(templates, objects)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A plain, low-saturation background colour far from every object colour."""
    palette = np.array(list(COLOURS.values()), dtype=np.float64)
    while True:
        grey = rng.uniform(25, 235)
        colour = np.clip(grey + rng.uniform(-25, 25, size=3), 0, 255)
        if np.min(np.linalg.norm(palette - colour, axis=1)) > 90:
            return colour.astype(np.uint8)


def generate_split(
    num_images: int, *, seed: int, image_size: int = 96, desc: str = "scenes"
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw ``num_images`` scenes deterministically from ``seed``.

    Returns:
        ``images`` uint8 ``(N, S, S, 3)`` and one annotation dict per image: ``objects`` (each
        with ``shape``, ``colour``, ``size``, ``box`` ``[x0, y0, x1, y1]`` in pixels, exclusive
        end), ``background`` RGB, ``captions`` (list of str) and ``word_objects`` (per caption,
        per word, the named object's index or -1).
    """
    if image_size < 96:
        raise ValueError(f"image_size: expected at least 96, received {image_size}")
    rng = np.random.default_rng(seed)
    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)  # (N, S, S, 3)
    annotations: list[dict[str, Any]] = []
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    for n in tqdm(range(num_images), desc=desc, unit="img", leave=False, mininterval=1.0):
        while True:
            count = int(rng.integers(1, 4))
            chosen = rng.choice(len(pairs), size=count, replace=False)  # distinct colour-shape pairs
            sizes = [SIZES[int(rng.integers(0, 2))] for _ in range(count)]
            radii = [_half_extent(s, rng, image_size) for s in sizes]
            centres = _place(radii, rng, image_size)
            if centres is not None:
                break
        background = _background(rng)
        image = images[n]
        image[:] = background
        objects = []
        for k in range(count):
            colour_name, shape = pairs[int(chosen[k])]
            jitter = rng.integers(-12, 13, size=3)
            colour = np.clip(np.array(COLOURS[colour_name]) + jitter, 0, 255).astype(np.uint8)
            _draw(image, shape, centres[k], radii[k], colour)
            cx, cy = centres[k]
            r = radii[k]
            box = [max(cx - r, 0), max(cy - r, 0), min(cx + r + 1, image_size), min(cy + r + 1, image_size)]
            objects.append(
                {"shape": shape, "colour": colour_name, "size": sizes[k], "box": box, "centre": [cx, cy]}
            )
        captions, word_objects = _captions(objects)
        annotations.append(
            {
                "objects": objects,
                "background": [int(v) for v in background],
                "captions": captions,
                "word_objects": word_objects,
            }
        )
    return images, annotations


def generate_scenes(
    root: str | Path,
    *,
    seed: int = 0,
    image_size: int = 96,
    num_train: int = 10_000,
    num_val: int = 500,
    num_test: int = 1_000,
    style: str = "plain",
) -> dict[str, Any]:
    """Generate (or reuse from the cache in ``root``) the train / val / test scene splits.

    ``style``: ``plain`` (this module's scenes) or ``varied`` (the broader scenes of
    :mod:`multiattn.tasks.captioning.sources.varied`).

    Returns:
        The cache manifest (``params``, ``files``, ``splits`` with each split's size).
    """
    if style not in STYLES:
        raise ValueError(f"style: expected one of {', '.join(STYLES)}, received {style!r}")
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    params: dict[str, Any] = {"generator": "captioning-scenes", "version": GENERATOR_VERSION, "seed": seed}
    params.update({"image_size": image_size, "sizes": sizes})
    if style != "plain":  # plain caches made before styles existed stay valid
        # imported here: the varied module imports this one's vocabulary
        from multiattn.tasks.captioning.sources.varied import VARIED_VERSION, generate_varied_split

        params.update({"style": style, "style_version": VARIED_VERSION})
    draw = generate_split if style == "plain" else generate_varied_split

    def generate(out: Path) -> dict[str, Any]:
        for split, count in sizes.items():
            images, annotations = draw(
                count, seed=seed * 1000 + SPLIT_SEEDS[split], image_size=image_size, desc=f"scenes/{split}"
            )
            np.save(out / f"{split}_images.npy", images)
            (out / f"{split}_annotations.json").write_text(json.dumps(annotations), encoding="utf-8")
        return {"splits": sizes}

    return cached_generate(root, params, generate)


def load_scene_split(root: str | Path, split: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Memory-map one generated split: ``(images (N, S, S, 3) uint8, annotations)``."""
    root = Path(root)
    images = np.load(root / f"{split}_images.npy", mmap_mode="r")
    annotations = json.loads((root / f"{split}_annotations.json").read_text(encoding="utf-8"))
    if len(annotations) != images.shape[0]:
        raise ValueError(f"{root}: {split} has {images.shape[0]} images but {len(annotations)} annotations")
    return images, annotations


def colour_shape_pairs(words: list[str]) -> list[tuple[str, str]]:
    """The (colour, shape) pairs a caption names: a colour word directly followed by a shape word."""
    return [(a, b) for a, b in zip(words, words[1:]) if a in COLOURS and b in SHAPES]
