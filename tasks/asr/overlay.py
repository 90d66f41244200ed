"""Speech overlay: spectrogram, decoder attention and CTC alignment on one time axis.

Three stacked panels sharing the time axis (seconds):

1. the log-mel spectrogram (low frequencies at the bottom), with the recognised words written at
   their start times and the true word starts (when known, e.g. on the embedded corpus) drawn as
   dashed white lines;
2. the decoder's attention alignment, output characters x encoder frames (Chorowski et al. 2015
   Fig. 2; Chan et al. 2016 Fig. 2): a good model draws a monotonic diagonal;
3. the CTC forced alignment of the same characters (``torchaudio.functional.forced_align``):
   which frames each character occupies.

Built from :func:`multiattn.viz.plot_alignment` and :func:`multiattn.viz.panel_grid`.

Shape legend: ``L`` feature frames, ``F`` mel bins, ``T`` output characters, ``S`` encoder frames.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from torch import Tensor

from multiattn.tasks.asr.alignment import WordSpan
from multiattn.tasks.asr.features import HOP_SECONDS, WINDOW_SECONDS
from multiattn.tasks.asr.model import FRAME_SECONDS, frame_time
from multiattn.viz import panel_grid, plot_alignment

__all__ = ["speech_overlay"]


def _char_labels(text: str) -> list[str]:
    return ["␣" if c == " " else c for c in text]


def speech_overlay(
    *,
    features: Tensor,
    text: str,
    attention: Tensor | None,
    ctc_alignment: Tensor | None,
    words: Sequence[WordSpan] = (),
    true_starts: Sequence[float] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw the overlay of one utterance.

    Args:
        features: ``(L, F)`` log-mel features (valid frames only).
        text: the recognised text (one row per character in the alignment panels).
        attention: ``(T, S)`` decoder attention, ``T >= len(text)`` (extra rows, e.g. the EOS
            step, are drawn too and labelled ``</s>``), or ``None``.
        ctc_alignment: ``(T, S)`` CTC span matrix (:func:`multiattn.tasks.asr.alignment.spans_matrix`) or ``None``.
        words: recognised words with times, labelled on the spectrogram.
        true_starts: true word start times in seconds, marked when given.
        title: figure title (e.g. the file name).

    Returns:
        A matplotlib figure (Agg canvas).
    """
    panels = 1 + (attention is not None) + (ctc_alignment is not None)
    rows = max(len(text), 1)
    width = max(6.0, min(14.0, 3.6 * features.shape[0] * HOP_SECONDS))
    height = max(2.6, min(6.0, 0.1 * rows))  # room for one readable label per character
    fig, axes = panel_grid(panels, 1, panel_size=(width, height))
    spec_end = (features.shape[0] - 1) * HOP_SECONDS + WINDOW_SECONDS
    plot_alignment(
        axes[0],
        features.float().cpu().T.flip(0),
        col_extent=spec_end,
        title=title or "log-mel spectrogram",
        cmap="magma",
    )
    axes[0].set_yticks([])
    axes[0].set_ylabel("mel")
    for word in words:
        axes[0].axvline(word.start, color="cyan", linewidth=0.8, alpha=0.8)
        axes[0].text(word.start, 2, word.word, color="cyan", fontsize=8, va="top", ha="left", rotation=30)
    panel = 1
    for matrix, name in ((attention, "decoder attention"), (ctc_alignment, "CTC forced alignment")):
        if matrix is None:
            continue
        frames = matrix.shape[1]
        first_edge = frame_time(0) - FRAME_SECONDS / 2  # left edge of encoder frame 0
        labels = _char_labels(text) + ["</s>"] * (matrix.shape[0] - len(text))
        step = max(1, rows // 60)
        ax = axes[panel]
        plot_alignment(
            ax, matrix.float().cpu(), col_extent=(first_edge, first_edge + frames * FRAME_SECONDS), title=name
        )
        ax.set_yticks(range(0, len(labels), step), labels=labels[::step], fontsize=6)
        ax.set_xlim(0.0, spec_end)
        panel += 1
    for ax in axes:
        ax.set_xlim(0.0, spec_end)
        for start in true_starts or ():
            ax.axvline(start, color="white", linestyle="--", linewidth=0.8, alpha=0.9)
    return fig
