"""Attention overlays: heat maps on images, alignment matrices, sampled regions.

Drawn with ``matplotlib.figure.Figure`` and the Agg canvas directly, never ``pyplot``: nothing here
changes the user's chosen backend or keeps figures alive in pyplot's global registry, and it runs
headless. The pictures follow the papers' figures: Show, Attend and Tell (Xu et al. 2015, fig. 2-3:
upsampled attention over the image per word), Bahdanau et al. 2015 (fig. 3: target x source
alignment), Jaderberg et al. 2015 (fig. 3: the sampled region drawn on the input).

Shape legend: ``H, W`` image size, ``h, w`` attention grid, ``T`` rows (output steps / tokens),
``S`` columns (input tokens / frames).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Polygon

from multiattn.io import atomic_open

ArtistT = TypeVar("ArtistT")

__all__ = [
    "to_image_array",
    "upsample_weights",
    "heatmap_overlay",
    "plot_alignment",
    "draw_region",
    "panel_grid",
    "save_figure",
    "figure_to_array",
]

ArrayLike = np.ndarray | torch.Tensor


def _to_numpy(array: ArrayLike, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return (
            array.detach().cpu().float().numpy()
            if array.is_floating_point()
            else array.detach().cpu().numpy()
        )
    if isinstance(array, np.ndarray):
        return array
    raise ValueError(f"{name}: expected a numpy array or torch tensor, received {type(array).__name__}")


def to_image_array(image: ArrayLike) -> np.ndarray:
    """Any supported image -> float32 in ``[0, 1]``, ``(H, W)`` grayscale or ``(H, W, 3)`` RGB.

    Accepts ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``; uint8 (0-255) or float (clipped to
    ``[0, 1]``). Channels-first tensors are rejected rather than guessed: ``(3, H, W)`` and
    ``(H, W, 3)`` cannot be told apart when ``W == 3``.
    """
    array = _to_numpy(image, "image")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]  # (H, W, 1) -> (H, W)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or 0 in array.shape:
        raise ValueError(
            f"image: expected shape (H, W), (H, W, 1) or (H, W, 3), received {tuple(array.shape)}"
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"image: expected uint8 or float values, received dtype {array.dtype}")
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def upsample_weights(weights: ArrayLike, size: tuple[int, int], *, mode: str = "bilinear") -> np.ndarray:
    """Smoothly resize an ``(h, w)`` attention grid to ``(H, W)`` (``bilinear`` or ``bicubic``).

    Each grid cell covers an equal block of the image (``align_corners=False``), so a peak in the
    top-left cell stays in the top-left of the image. Bicubic overshoot is clipped to the input range.
    """
    grid = _to_numpy(weights, "weights").astype(np.float32)
    if grid.ndim != 2 or 0 in grid.shape:
        raise ValueError(f"weights: expected shape (h, w), received {tuple(grid.shape)}")
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"mode: expected 'bilinear' or 'bicubic', received {mode!r}")
    tensor = torch.from_numpy(grid)[None, None]  # (h, w) -> (1, 1, h, w)
    up = F.interpolate(tensor, size=(int(size[0]), int(size[1])), mode=mode, align_corners=False)[
        0, 0
    ]  # (H, W)
    return up.clamp(float(grid.min()), float(grid.max())).numpy()


def _show_image(ax: Axes, image: np.ndarray) -> AxesImage:
    if image.ndim == 2:
        return ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    return ax.imshow(image, interpolation="nearest")


def _titled(ax: Axes, title: str | None, artist: ArtistT) -> ArtistT:
    """Give ``ax`` the panel title (when one is asked for) and return what was drawn."""
    if title is not None:
        ax.set_title(title, fontsize=9)
    return artist


def heatmap_overlay(
    ax: Axes,
    image: ArrayLike,
    weights: ArrayLike,
    *,
    alpha: float = 0.6,
    cmap: str = "jet",
    mode: str = "bilinear",
    title: str | None = None,
) -> AxesImage:
    """Draw ``image`` with the attention ``weights`` upsampled over it (one caption word's map).

    Args:
        ax: target axes.
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, uint8 or float in ``[0, 1]``.
        weights: ``(h, w)`` attention grid (any non-negative scale; coloured from 0 to its max).
        alpha: opacity of the heat map.
        cmap: matplotlib colormap name for the heat map.
        mode: ``"bilinear"`` or ``"bicubic"`` upsampling.
        title: optional axes title (e.g. the word).

    Returns:
        The heat map's ``AxesImage`` (for a colorbar).
    """
    picture = to_image_array(image)
    heat = upsample_weights(weights, picture.shape[:2], mode=mode)  # (H, W)
    _show_image(ax, picture)
    top = float(heat.max())
    handle = ax.imshow(
        heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=top if top > 0 else 1.0, interpolation="nearest"
    )
    ax.set_axis_off()
    return _titled(ax, title, handle)


def plot_alignment(
    ax: Axes,
    matrix: ArrayLike,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    col_extent: float | tuple[float, float] | None = None,
    title: str | None = None,
    cmap: str = "viridis",
) -> AxesImage:
    """Draw a ``(T, S)`` alignment (output steps x input tokens or frames), row 0 at the top.

    Args:
        ax: target axes.
        matrix: ``(T, S)`` weights.
        row_labels: ``T`` labels (output tokens).
        col_labels: ``S`` labels (input tokens); exclusive with ``col_extent``.
        col_extent: the columns' time span in seconds, ``end`` or ``(start, end)``, for audio frames;
            the x axis is then labelled in seconds.
        title: optional title.
        cmap: colormap name.

    Returns:
        The ``AxesImage``.
    """
    values = _to_numpy(matrix, "matrix").astype(np.float32)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"matrix: expected shape (T, S), received {tuple(values.shape)}")
    rows, cols = values.shape
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(
            f"row_labels: expected {rows} labels for matrix {values.shape}, received {len(row_labels)}"
        )
    if col_labels is not None and col_extent is not None:
        raise ValueError("col_labels and col_extent: give at most one")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(
            f"col_labels: expected {cols} labels for matrix {values.shape}, received {len(col_labels)}"
        )
    extent = None
    if col_extent is not None:
        start, end = (0.0, float(col_extent)) if np.isscalar(col_extent) else map(float, col_extent)
        if not end > start:
            raise ValueError(f"col_extent: expected end > start, received ({start}, {end})")
        extent = (start, end, rows - 0.5, -0.5)  # rows keep integer centres, top to bottom
        ax.set_xlabel("time (s)")
    handle = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest", extent=extent)
    if row_labels is not None:
        ax.set_yticks(range(rows), labels=list(row_labels), fontsize=8)
    if col_labels is not None:
        ax.set_xticks(range(cols), labels=list(col_labels), fontsize=8, rotation=90)
    return _titled(ax, title, handle)


def draw_region(
    ax: Axes,
    image: ArrayLike,
    corners: ArrayLike,
    *,
    color: str = "red",
    linewidth: float = 2.0,
    title: str | None = None,
) -> Polygon:
    """Draw ``image`` with the sampled region's outline (spatial transformer).

    Args:
        ax: target axes.
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``.
        corners: ``(4, 2)`` pixel ``(x, y)`` from :func:`multiattn.stn.theta_to_corners` (pixel
            centres at integers, as ``imshow`` draws them).
        color: outline colour.
        linewidth: outline width.
        title: optional title.

    Returns:
        The polygon patch.
    """
    picture = to_image_array(image)
    points = _to_numpy(corners, "corners").astype(np.float64)
    if points.shape != (4, 2):
        raise ValueError(f"corners: expected shape (4, 2), received {tuple(points.shape)}")
    _show_image(ax, picture)
    polygon = Polygon(points, closed=True, fill=False, edgecolor=color, linewidth=linewidth)
    ax.add_patch(polygon)
    # Keep the full image in view even when the region leaves it.
    height, width = picture.shape[:2]
    ax.set_xlim(min(-0.5, points[:, 0].min()), max(width - 0.5, points[:, 0].max()))
    ax.set_ylim(max(height - 0.5, points[:, 1].max()), min(-0.5, points[:, 1].min()))
    ax.set_axis_off()
    return _titled(ax, title, polygon)


def panel_grid(
    n: int, ncols: int, *, panel_size: tuple[float, float] = (3.0, 3.0), dpi: int = 100
) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels in rows of ``ncols``; unused cells of the last row are hidden.

    Args:
        n: number of panels.
        ncols: panels per row (clipped to ``n``).
        panel_size: ``(width, height)`` of one panel in inches.
        dpi: figure resolution (the PNG is ``ncols * width * dpi`` pixels wide).

    Returns:
        ``(figure, axes)`` with ``len(axes) == n``, in reading order.
    """
    if n < 1 or ncols < 1:
        raise ValueError(f"panel_grid: expected n >= 1 and ncols >= 1, received n={n}, ncols={ncols}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(nrows, ncols, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, axes[:n]


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG atomically (a reader never sees a half-written file).

    The PNG is rendered in memory first, so the temporary file beside ``path`` lives only while its
    bytes are written: a process killed while rendering (the slow part) leaves nothing behind.
    """
    path = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())
    return path


def figure_to_array(figure: Figure) -> np.ndarray:
    """Render ``figure`` to an ``(H, W, 3)`` uint8 RGB array (e.g. for TensorBoard ``add_image``)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
