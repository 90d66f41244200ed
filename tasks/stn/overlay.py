"""The spatial transformer's attention picture: where it looked, and what the classifier saw.

Each example is a pair of panels: the input with the sampled region (the four output corners
mapped through ``theta``, :func:`multiattn.stn.theta_to_corners`) drawn on it, and the warped
image the classifier received, titled with the prediction. Used by validation logging
(:mod:`multiattn.tasks.common.overlay_logging`) and by ``multiattn classify --overlay-dir``.

Shape legend: ``H, W`` input size, ``h, w`` warped size, ``C`` channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from multiattn.viz import draw_region, panel_grid, to_image_array

__all__ = ["region_figure", "as_picture"]


def as_picture(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] (C = 1 or 3) or ``(H, W[, C])`` -> ``(H, W)`` / ``(H, W, 3)``."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]  # (H, W, 1) -> (H, W)
    return np.clip(array, 0.0, 1.0)


def region_figure(
    inputs: Sequence[np.ndarray],
    corners: Sequence[np.ndarray | None],
    warped: Sequence[np.ndarray | None],
    titles: Sequence[str],
    *,
    pairs_per_row: int = 4,
    panel_inches: float = 1.8,
    grids: Sequence[np.ndarray] | None = None,
) -> Figure:
    """A grid of (input + region, warped image) pairs.

    Args:
        inputs: per example, the image ``(H, W)``, ``(H, W, 3)`` or ``(C, H, W)``.
        corners: per example, ``(4, 2)`` pixel ``(x, y)`` in that image's coordinates, or ``None``
            (no transformer: the input is shown without a region).
        warped: per example, the classifier's input ``(h, w)`` / ``(C, h, w)``, or ``None``.
        titles: per example, e.g. ``"7 (0.98)"``.
        pairs_per_row: examples per row.
        grids: per example, ``(L, P, 2)`` pixel polylines of the output grid mapped into the input
            (:func:`multiattn.stn.region_grid_lines`), drawn over the region: how a thin-plate
            spline bends it. ``None`` draws the outline alone.
        panel_inches: size of one panel.

    Returns:
        The figure (Agg canvas; save with :func:`multiattn.viz.save_figure`).
    """
    count = len(inputs)
    if not (len(corners) == len(warped) == len(titles) == count) or count == 0:
        raise ValueError(
            f"region_figure: expected equal non-zero lengths, received {count}, {len(corners)}, "
            f"{len(warped)}, {len(titles)}"
        )
    figure, axes = panel_grid(2 * count, 2 * pairs_per_row, panel_size=(panel_inches, panel_inches), dpi=80)
    for index in range(count):
        picture = as_picture(inputs[index])
        left, right = axes[2 * index], axes[2 * index + 1]
        if corners[index] is not None:
            draw_region(
                left, picture, np.asarray(corners[index]), color="red", linewidth=1.5, title=titles[index]
            )
            if grids is not None:
                for line in np.asarray(grids[index]):  # (P, 2) each
                    left.plot(line[:, 0], line[:, 1], color="red", linewidth=0.6)
        else:
            left.imshow(to_image_array(picture), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            left.set_title(titles[index], fontsize=9)
            left.set_axis_off()
        if warped[index] is not None:
            right.imshow(
                to_image_array(as_picture(warped[index])),
                cmap="gray",
                vmin=0.0,
                vmax=1.0,
                interpolation="nearest",
            )
            right.set_title("warped", fontsize=8)
        right.set_axis_off()
    return figure
