"""Attention overlays drawn with matplotlib's Agg canvas (no pyplot, no backend switch)."""

from multiattn.viz.overlays import (
    draw_region,
    figure_to_array,
    heatmap_overlay,
    panel_grid,
    plot_alignment,
    save_figure,
    to_image_array,
    upsample_weights,
)

__all__ = [
    "draw_region",
    "figure_to_array",
    "heatmap_overlay",
    "panel_grid",
    "plot_alignment",
    "save_figure",
    "to_image_array",
    "upsample_weights",
]
