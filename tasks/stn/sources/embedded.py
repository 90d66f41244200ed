"""The embedded default data: distorted / cluttered digits generated offline and cached.

Source glyphs (scikit-learn handwriting + matplotlib font renders, :mod:`.glyphs`) are split into
train / val / test by source image first, then each split is distorted on its own
(:mod:`.distort`), so no source image, and no clutter fragment, crosses splits. The result is
cached under ``<data_dir>/<variant>/`` as ``.npy`` arrays with a manifest
(:func:`multiattn.datacache.cached_generate`): regenerated when missing, corrupt, or made with
other parameters; deterministic by seed.

Files per split ``s``: ``s_images.npy`` ``(M, C, C)`` uint8, ``s_labels.npy`` ``(M,)`` int64,
``s_boxes.npy`` ``(M, 4)`` float32 ``(x0, y0, x1, y1)``, ``s_sources.npy`` ``(M,)`` int64 (the
source glyph's group id).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from multiattn.datacache import cached_generate
from tasks.stn.sources.distort import DistortionSpec, distort_digits
from tasks.stn.sources.glyphs import load_source_glyphs, split_groups

__all__ = ["SPLITS", "GENERATOR_VERSION", "generate_embedded", "load_split"]

SPLITS = ("train", "val", "test")
GENERATOR_VERSION = 1


def generate_embedded(
    data_dir: str | Path,
    spec: DistortionSpec,
    *,
    sizes: tuple[int, int, int],
    seed: int,
    source_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    progress: bool = True,
) -> Path:
    """Generate (or reuse) the cached dataset of one variant.

    Args:
        data_dir: parent folder (``data/stn`` by default); the cache is ``data_dir/<variant>``.
        spec: the distortion (variant, canvas, clutter ...).
        sizes: number of train / val / test images.
        seed: random seed; the same seed gives identical arrays.
        source_fractions: share of source images in train / val / test.
        progress: tqdm bars while generating.

    Returns:
        The cache folder.
    """
    root = Path(data_dir) / spec.variant
    params: dict[str, Any] = {
        "generator": "tasks.stn.sources.embedded",
        "version": GENERATOR_VERSION,
        "spec": dataclasses.asdict(spec),
        "sizes": [int(s) for s in sizes],
        "seed": int(seed),
        "source_fractions": [float(f) for f in source_fractions],
    }

    def generate(folder: Path) -> dict[str, Any]:
        glyphs = load_source_glyphs()
        splits = split_groups(glyphs, source_fractions, seed=seed)
        counts = {}
        for split_index, (name, size) in enumerate(zip(SPLITS, sizes)):
            part = splits[name]
            made = distort_digits(
                part.images,
                part.labels,
                spec,
                num_samples=int(size),
                seed=seed * 1009 + split_index,
                progress=progress,
                description=f"stn {spec.variant} {name}",
            )
            np.save(folder / f"{name}_images.npy", made.images)
            np.save(folder / f"{name}_labels.npy", made.labels)
            np.save(folder / f"{name}_boxes.npy", made.boxes)
            np.save(folder / f"{name}_sources.npy", part.groups[made.sources])
            counts[name] = {"images": int(size), "source_images": len(part)}
        return {"splits": counts, "canvas_size": spec.canvas}

    cached_generate(root, params, generate)
    return root


def load_split(root: str | Path, split: str, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Arrays of one split of a generated cache: ``images``, ``labels``, ``boxes``, ``sources``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    root = Path(root)
    mode = "r" if mmap else None
    return {
        key: np.load(root / f"{split}_{key}.npy", mmap_mode=mode)
        for key in ("images", "labels", "boxes", "sources")
    }
