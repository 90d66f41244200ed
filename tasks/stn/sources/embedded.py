"""The embedded default data: distorted / cluttered digits generated offline and cached.

Source glyphs (scikit-learn handwriting + font renders: matplotlib's fonts, or for the broad digit
set every usable font on the machine, :mod:`.glyphs`, :mod:`.fonts`) are split into
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
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from multiattn.datacache import cached_generate
from multiattn.tasks.stn.sources.distort import DistortionSpec, distort_digits
from multiattn.tasks.stn.sources.fonts import (
    FONT_PACKAGES,
    FontFace,
    discover_fonts,
    faces_fingerprint,
    missing_packages,
)
from multiattn.tasks.stn.sources.glyphs import VARIETIES, load_source_glyphs, split_groups

log = logging.getLogger(__name__)

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
    variety: str = "standard",
    font_dirs: Sequence[str | Path] = (),
) -> Path:
    """Generate (or reuse) the cached dataset of one variant.

    Args:
        data_dir: parent folder (``data/stn`` by default); the cache is ``data_dir/<variant>``
            (``data_dir/<variant>-broad`` for the broad digit set).
        spec: the distortion (variant, canvas, clutter ...); for a ``variety`` other than
            ``"standard"`` the caller passes :func:`.distort.variety_spec`'s.
        sizes: number of train / val / test images.
        seed: random seed; the same seed (and, for the broad set, the same fonts) gives
            identical arrays.
        source_fractions: share of source images in train / val / test.
        progress: tqdm bars while generating.
        variety: ``"standard"`` (matplotlib's fonts), ``"varied"`` or ``"broad"`` (every usable font found,
            :func:`.fonts.discover_fonts`).
        font_dirs: extra font folders for the varied and broad sets.

    Returns:
        The cache folder.
    """
    if variety not in VARIETIES:
        raise ValueError(f"unknown variety {variety!r}; valid varieties: {', '.join(VARIETIES)}")
    root = Path(data_dir) / (spec.variant if variety == "standard" else f"{spec.variant}-{variety}")
    # Style fields at their neutral defaults are left out, so caches made before they existed stay valid.
    neutral = spec.neutral_style()
    params: dict[str, Any] = {
        "generator": "tasks.stn.sources.embedded",
        "version": GENERATOR_VERSION,
        "spec": {k: v for k, v in dataclasses.asdict(spec).items() if k not in neutral},
        "sizes": [int(s) for s in sizes],
        "seed": int(seed),
        "source_fractions": [float(f) for f in source_fractions],
    }
    faces: list[FontFace] = []
    if variety != "standard":
        faces = discover_fonts(font_dirs)
        _report_missing_fonts(faces)
        params["variety"] = variety
        params["fonts"] = {"faces": len(faces), "fingerprint": faces_fingerprint(faces)}

    def generate(folder: Path) -> dict[str, Any]:
        glyphs = load_source_glyphs(variety, faces)
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
            if part.origins is not None:
                counts[name]["origins"] = sorted(set(part.origins[np.unique(made.sources)].tolist()))
        return {"splits": counts, "canvas_size": spec.canvas}

    cached_generate(root, params, generate)
    return root


def _report_missing_fonts(faces: Sequence[FontFace]) -> None:
    """One message when font packages of the broad set are missing (they are skipped)."""
    missing = missing_packages()
    families = len({face.family for face in faces})
    if missing is None:
        log.warning(
            "broad digits: %d font families found (no Debian package database to check for more)", families
        )
    elif missing:
        log.warning(
            "broad digits: %d of %d font packages are not installed and are skipped (%s); using the "
            "%d font families found. `make fonts` installs them (Debian, as root).",
            len(missing),
            sum(len(p) for p in FONT_PACKAGES.values()),
            " ".join(missing),
            families,
        )


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
