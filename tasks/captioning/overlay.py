"""The captioning overlay: the image, then one panel per generated word with its attention.

As in Show, Attend and Tell (Xu et al. 2015, figures 2-3): each word's attention over the
feature grid is upsampled (bilinear) to the image size and drawn over it, the word as the panel
title. The grid size comes from the map itself, never hard-coded.

Shape legend: ``S`` image side, ``T`` caption words, ``H, W`` attention grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from multiattn.viz import heatmap_overlay, panel_grid

__all__ = ["caption_figure"]


def caption_figure(
    image: np.ndarray,
    words: Sequence[str],
    attention: Tensor | np.ndarray | None,
    *,
    ncols: int = 6,
    panel_inches: float = 1.6,
    dpi: int = 80,
) -> Figure:
    """Build the overlay figure.

    Args:
        image: uint8 ``(S, S, 3)``.
        words: the caption's words.
        attention: ``(T, H, W)`` one map per word (``None``: only the image is drawn).
        ncols: panels per row.
        panel_inches: side of one panel.
        dpi: resolution (keeps the PNG small).

    Returns:
        A matplotlib figure (Agg); save it with :func:`multiattn.viz.save_figure`.
    """
    count = 0 if attention is None else min(len(words), int(attention.shape[0]))
    figure, axes = panel_grid(1 + count, ncols, panel_size=(panel_inches, panel_inches), dpi=dpi)
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_axis_off()
    caption = " ".join(words) if words else "(empty caption)"
    # Long captions wrap over a few title lines instead of spilling over the panel.
    lines, line = [], ""
    for word in caption.split():
        if len(line) + len(word) > 22 and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    axes[0].set_title("\n".join(lines), fontsize=7)
    for t in range(count):
        heatmap_overlay(axes[1 + t], image, attention[t], title=words[t])
    return figure
