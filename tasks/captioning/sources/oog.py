"""Out-of-generator scenes: the captioning vocabulary drawn by a second renderer, for evaluation only.

A model is never trained on these. They show 1-3 objects (the scenes of the plain generator's
kind) with the same words, but drawn by another library (matplotlib patches through the Agg
renderer, where the training scenes use numpy masks or PIL), with other proportions and other
looks:

- triangles are equilateral (the training triangles fill their box), pointing up or down;
  squares have slightly rounded corners, some are tilted; circles are exact;
- sizes from their own ranges (small 6-10 %, large 13-18 % of the image side, as half extents);
- colours are matplotlib's named colours (``tab:red``, ``crimson``, ``forestgreen``,
  ``royalblue``, ``gold``, ...), some objects with a thin dark edge;
- backgrounds: a radial vignette, a diagonal two-tone split, a dot grid or thin grid lines.

Captions, word alignments and relations follow :func:`multiattn.tasks.captioning.sources.varied.scene_captions`
(the plain grammar's paraphrases first, then the freer ones), so models trained on either style
are scored against references they could have said. Boxes come from the patches' geometry
(edge line included), in pixels, exclusive end.

Shape legend: ``N`` images, ``S`` image side in pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import patches
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from tqdm import tqdm

from multiattn.datacache import cached_generate
from multiattn.tasks.captioning.sources.scenes import COLOURS, SHAPES, SIZES
from multiattn.tasks.captioning.sources.varied import place_objects, scene_captions

__all__ = ["OOG_VERSION", "OOG_COLOURS", "generate_oog_split", "generate_oog"]

OOG_VERSION = 1
OOG_COLOURS = {
    "red": ("tab:red", "crimson", "firebrick", "red", "#e41a1c"),
    "green": ("tab:green", "forestgreen", "limegreen", "seagreen", "#4daf4a"),
    "blue": ("tab:blue", "royalblue", "mediumblue", "dodgerblue", "#377eb8"),
    "yellow": ("gold", "yellow", "#ffd92f", "#f0e442", "#ffcc00"),
}
_SIZE_RANGES = {"small": (0.06, 0.10), "large": (0.13, 0.18)}
_BACKGROUNDS = ("vignette", "split", "dots", "grid")
_SEED_OFFSET = 7_000  # the split's seed never coincides with a training split's


def _grey(rng: np.random.Generator) -> tuple[float, float, float]:
    """A tinted grey: saturation at most about 0.15, never a named colour."""
    level = rng.uniform(0.12, 0.9)
    return tuple(float(np.clip(level * (1 + rng.uniform(-0.08, 0.08)), 0, 1)) for _ in range(3))


def _background(ax, kind: str, side: int, rng: np.random.Generator) -> None:
    a, b = _grey(rng), _grey(rng)
    if kind == "vignette":
        ys, xs = np.mgrid[:side, :side] / side - 0.5  # (S, S) each
        weight = np.clip(np.hypot(xs, ys) / 0.7, 0, 1)[..., None]  # (S, S, 1)
        ax.imshow(np.array(a) * (1 - weight) + np.array(b) * weight, extent=(0, side, side, 0), zorder=0)
    else:
        ax.add_patch(patches.Rectangle((0, 0), side, side, color=a, zorder=0))
        if kind == "split":
            corner = [(0, side), (side, 0)] if rng.random() < 0.5 else [(0, 0), (side, side)]
            far = (side, side) if corner[0] == (0, side) else (side, 0)
            ax.add_patch(patches.Polygon([*corner, far], closed=True, color=b, zorder=0))
        elif kind == "dots":
            step = rng.uniform(5, 10)
            grid = np.arange(step / 2, side, step)
            xs, ys = np.meshgrid(grid, grid)
            ax.scatter(xs.ravel(), ys.ravel(), s=rng.uniform(1, 4), color=b, linewidths=0, zorder=0)
        else:  # grid lines
            step = rng.uniform(8, 16)
            for v in np.arange(step / 2, side, step):
                ax.axhline(v, color=b, linewidth=0.8, zorder=0)
                ax.axvline(v, color=b, linewidth=0.8, zorder=0)


def _patch(shape: str, cx: float, cy: float, r: float, rng: np.random.Generator, **style: Any):
    """A matplotlib patch and its half extents ``(hx, hy)`` in pixels (before any edge line)."""
    if shape == "circle":
        return patches.Circle((cx, cy), r, **style), (r, r)
    if shape == "square":
        tilt = rng.uniform(-15, 15) if rng.random() < 0.5 else 0.0
        corners = np.array([[-r, -r], [r, -r], [r, r], [-r, r]])
        c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
        corners = corners @ np.array([[c, s], [-s, c]])  # (4, 2)
        if tilt == 0.0:  # upright squares get rounded corners
            style_name = f"round,pad=0,rounding_size={0.3 * r:.3f}"
            return patches.FancyBboxPatch((cx - r, cy - r), 2 * r, 2 * r, boxstyle=style_name, **style), (
                r,
                r,
            )
        extent = np.abs(corners).max(axis=0)
        return patches.Polygon(corners + [cx, cy], closed=True, **style), (float(extent[0]), float(extent[1]))
    # equilateral triangle of circumradius r, pointing up (y grows downwards) or down
    sign = -1.0 if rng.random() < 0.7 else 1.0
    angles = np.radians([90.0, 210.0, 330.0])
    points = np.stack([r * np.cos(angles), sign * r * np.sin(angles)], axis=1)  # (3, 2)
    centre_shift = (points[:, 1].max() + points[:, 1].min()) / 2  # centre the box on (cx, cy)
    points[:, 1] -= centre_shift
    extent = np.abs(points).max(axis=0)
    return patches.Polygon(points + [cx, cy], closed=True, **style), (float(extent[0]), float(extent[1]))


def generate_oog_split(
    num_images: int, *, seed: int, image_size: int = 96, desc: str = "oog scenes"
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw ``num_images`` out-of-generator scenes deterministically from ``seed``.

    Returns:
        ``images`` uint8 ``(N, S, S, 3)`` and annotations as
        :func:`multiattn.tasks.captioning.sources.scenes.generate_split` gives (``objects`` with ``shape``,
        ``colour``, ``size``, ``box``, ``centre``; ``captions``; ``word_objects``), plus ``render``.
    """
    if image_size < 96:
        raise ValueError(f"image_size: expected at least 96, received {image_size}")
    rng = np.random.default_rng(seed + _SEED_OFFSET)
    figure = Figure(figsize=(image_size / 100, image_size / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)
    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)  # (N, S, S, 3)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    annotations = []
    for n in tqdm(range(num_images), desc=desc, unit="img", leave=False, mininterval=1.0):
        figure.clear()
        ax = figure.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, image_size)
        ax.set_ylim(image_size, 0)  # pixel coordinates, y down
        ax.set_axis_off()
        kind = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
        _background(ax, kind, image_size, rng)
        while True:
            count = int(rng.integers(1, 4))
            chosen = rng.choice(len(pairs), size=count, replace=False)
            sizes = [SIZES[int(rng.integers(2))] for _ in range(count)]
            radii = [rng.uniform(*_SIZE_RANGES[s]) * image_size for s in sizes]
            # place by the largest extent any of the shapes can have (a tilted square's)
            bound = [(r * math.sqrt(2) + 1, r * math.sqrt(2) + 1) for r in radii]
            centres = place_objects(bound, image_size, rng)
            if centres is not None:
                break
        objects = []
        for k in range(count):
            colour, shape = pairs[int(chosen[k])]
            (cx, cy), r = centres[k], radii[k]
            face = to_rgb(OOG_COLOURS[colour][int(rng.integers(len(OOG_COLOURS[colour])))])
            edge = rng.uniform(0.6, 1.5) if rng.random() < 0.3 else 0.0
            style = {
                "facecolor": face,
                "edgecolor": (0.1, 0.1, 0.1) if edge else face,
                "linewidth": edge,
                "zorder": 2,
            }
            patch, (hx, hy) = _patch(shape, cx, cy, r, rng, **style)
            ax.add_patch(patch)
            pad = edge * 100 / 72 / 2  # half the edge line, points -> pixels at 100 dpi
            box = [
                max(int(math.floor(cx - hx - pad)), 0),
                max(int(math.floor(cy - hy - pad)), 0),
                min(int(math.ceil(cx + hx + pad)), image_size),
                min(int(math.ceil(cy + hy + pad)), image_size),
            ]
            objects.append(
                {
                    "shape": shape,
                    "colour": colour,
                    "size": sizes[k],
                    "box": box,
                    "centre": [int(round(cx)), int(round(cy))],
                    "edge": round(2 * pad, 3),  # width of the dark edge line in pixels (0: none)
                }
            )
        canvas.draw()
        images[n] = np.asarray(canvas.buffer_rgba())[..., :3]
        captions, word_objects = scene_captions(objects)
        annotations.append(
            {
                "objects": objects,
                "render": {"background": kind},
                "captions": captions,
                "word_objects": word_objects,
            }
        )
    return images, annotations


def generate_oog(
    root: str | Path, *, num_images: int = 500, seed: int = 0, image_size: int = 96
) -> dict[str, Any]:
    """Generate (or reuse from the cache in ``root``) the ``test`` split of out-of-generator scenes.

    Read it back with :func:`multiattn.tasks.captioning.sources.scenes.load_scene_split` (``split="test"``).
    """
    params = {"generator": "captioning-oog", "version": OOG_VERSION, "seed": seed}
    params.update({"image_size": image_size, "sizes": {"test": num_images}})

    def generate(out: Path) -> dict[str, Any]:
        images, annotations = generate_oog_split(num_images, seed=seed, image_size=image_size)
        np.save(out / "test_images.npy", images)
        (out / "test_annotations.json").write_text(json.dumps(annotations), encoding="utf-8")
        return {"splits": {"test": num_images}}

    return cached_generate(root, params, generate)
