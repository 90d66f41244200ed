"""Overlay primitives: every function draws and saves a readable PNG; shapes are validated."""

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from multiattn.viz import (
    draw_region,
    figure_to_array,
    heatmap_overlay,
    panel_grid,
    plot_alignment,
    save_figure,
    to_image_array,
    upsample_weights,
)

IMAGES = {
    "gray": np.linspace(0, 1, 24 * 32, dtype=np.float32).reshape(24, 32),
    "gray1": np.zeros((24, 32, 1), np.uint8),
    "rgb_float": torch.rand(24, 32, 3),
    "rgb_uint8": np.full((24, 32, 3), 200, np.uint8),
}


def open_png(path):
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_heatmap_overlay_writes_png(tmp_path, kind):
    fig, (ax,) = panel_grid(1, 1, panel_size=(2.0, 1.5), dpi=50)
    heatmap_overlay(ax, IMAGES[kind], torch.rand(3, 4), title="word")
    path = save_figure(fig, tmp_path / "sub" / "heat.png")
    assert path.stat().st_size > 0
    assert open_png(path) == (100, 75)
    assert not list(path.parent.glob(".heat.png*"))  # no temporary left behind


def test_heatmap_peak_lands_top_left():
    weights = np.zeros((4, 4), np.float32)
    weights[0, 0] = 1.0
    heat = upsample_weights(weights, (40, 60))
    quadrants = [heat[:20, :30].sum(), heat[:20, 30:].sum(), heat[20:, :30].sum(), heat[20:, 30:].sum()]
    assert int(np.argmax(quadrants)) == 0 and quadrants[3] == 0
    assert np.unravel_index(np.argmax(heat), heat.shape) < (10, 15)
    bicubic = upsample_weights(weights, (40, 60), mode="bicubic")
    assert bicubic.min() >= 0 and bicubic[:10, :15].sum() > bicubic[10:, 15:].sum()


def test_heatmap_colours_follow_the_peak():
    # Rendered pixels: with the "jet" map high weights are red, low ones blue, so the top-left
    # quadrant of the overlay must be the reddest.
    image = np.full((40, 40), 0.5, np.float32)
    weights = np.zeros((2, 2), np.float32)
    weights[0, 0] = 1.0
    fig, (ax,) = panel_grid(1, 1, panel_size=(2.0, 2.0), dpi=50)
    fig.set_layout_engine(None)
    ax.set_position((0, 0, 1, 1))
    heatmap_overlay(ax, image, weights, cmap="jet")
    pixels = figure_to_array(fig).astype(np.int32)
    redness = pixels[..., 0] - pixels[..., 2]  # (H, W)
    half = redness.shape[0] // 2
    quadrants = [redness[:half, :half], redness[:half, half:], redness[half:, :half], redness[half:, half:]]
    means = [q.mean() for q in quadrants]
    assert int(np.argmax(means)) == 0 and means[0] > 0 > means[3]


def test_plot_alignment_and_draw_region(tmp_path):
    fig, axes = panel_grid(3, 2, panel_size=(2.0, 2.0), dpi=40)
    assert len(axes) == 3
    plot_alignment(axes[0], torch.rand(3, 5), row_labels=["a", "b", "c"], col_labels=list("vwxyz"), title="t")
    plot_alignment(axes[1], np.random.default_rng(0).random((3, 50)), col_extent=1.25)
    polygon = draw_region(
        axes[2], IMAGES["rgb_uint8"], torch.tensor([[1.0, 2.0], [20, 2], [20, 15], [1, 15]])
    )
    np.testing.assert_allclose(polygon.get_xy()[:4], [[1, 2], [20, 2], [20, 15], [1, 15]])
    path = save_figure(fig, tmp_path / "grid.png")
    assert open_png(path) == (160, 160)
    array = figure_to_array(fig)
    assert array.shape == (160, 160, 3) and array.dtype == np.uint8 and array.std() > 0


def test_matplotlib_backend_untouched():
    before = matplotlib.get_backend()
    fig, (ax,) = panel_grid(1, 1, dpi=20)
    heatmap_overlay(ax, IMAGES["gray"], np.ones((2, 2)))
    figure_to_array(fig)
    assert matplotlib.get_backend() == before


def test_bad_shapes_raise():
    fig, (ax,) = panel_grid(1, 1, dpi=20)
    with pytest.raises(ValueError, match="image"):
        heatmap_overlay(ax, np.zeros((4, 4, 4)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="image"):
        to_image_array(torch.zeros(3, 8, 8, 2))
    with pytest.raises(ValueError, match="weights"):
        heatmap_overlay(ax, IMAGES["gray"], np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="matrix"):
        plot_alignment(ax, np.ones(5))
    with pytest.raises(ValueError, match="row_labels"):
        plot_alignment(ax, np.ones((2, 3)), row_labels=["a"])
    with pytest.raises(ValueError, match="corners"):
        draw_region(ax, IMAGES["gray"], np.ones((3, 2)))
    with pytest.raises(ValueError, match="panel_grid"):
        panel_grid(0, 2)


def test_save_figure_killed_while_rendering_leaves_no_file(tmp_path):
    # A fit SIGKILLed while an overlay is rendered must leave no hidden temporary file in the logs.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import os, signal
        from matplotlib.figure import Figure
        from multiattn.viz import save_figure
        original = Figure.savefig
        def savefig(self, *args, **kwargs):
            original(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)  # killed as the rendering ends
        Figure.savefig = savefig
        figure = Figure(figsize=(1, 1))
        figure.add_subplot().plot([0, 1])
        save_figure(figure, {str(tmp_path / "logs" / "overlay.png")!r})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []
