"""Captioning metrics the way the field computes them, plus attention-quality scores.

Language metrics: BLEU-1..4 (Papineni et al. 2002), METEOR (Denkowski and Lavie 2014), ROUGE-L
(Lin 2004) and CIDEr-D (Vedantam et al. 2015) from ``pycocoevalcap`` (the COCO caption toolkit,
Chen et al. 2015), at corpus level against all references, after its PTB tokenizer. The scorers
are called one by one: ``COCOEvalCap.evaluate()`` also runs SPICE, which downloads Stanford
CoreNLP on first use and aborts offline. ``pycocoevalcap``'s ``Cider`` is the CIDEr-D variant
(clipped counts, Gaussian length penalty, sigma 6), as on the COCO leaderboard.

Java is needed by METEOR and by the PTB tokenizer. Without ``java`` on PATH, METEOR is left out
(a warning says so) and captions are tokenized by :func:`simple_tokenize` instead: lower-case,
every character that is not a letter, digit or apostrophe becomes a space. On plain English
captions it gives the same words as the PTB tokenizer except for clitics ("dog's" stays one word).

Attention quality (no toolkit reports it): for a word that names an object, the share of the
attention mass that falls inside the object's box, and the pointing game (Zhang et al. 2016,
"Top-down neural attention by excitation backprop"): a hit when the arg-max of the map lies
inside the box. Maps are upsampled bilinearly to the image size first, as the overlays are.

Shape legend: ``N`` scored words, ``H, W`` attention grid, ``Hi, Wi`` image size in pixels.
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from multiattn.masks import check_shape

__all__ = [
    "CAPTION_METRIC_NAMES",
    "java_available",
    "simple_tokenize",
    "caption_metrics",
    "attention_box_scores",
    "box_cell_coverage",
]

log = logging.getLogger(__name__)
CAPTION_METRIC_NAMES = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d")
_NON_WORD = re.compile(r"[^a-z0-9']+")
# The PTB tokenizer mis-aligns its output lines when a line is empty, and the scorers need a
# word; an empty hypothesis (a model that stops at once) becomes this one non-word.
EMPTY_HYPOTHESIS = "<empty>"


def java_available() -> bool:
    """``True`` when a ``java`` executable is on PATH (METEOR and the PTB tokenizer need it)."""
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """The fallback tokenizer: lower-case, punctuation to spaces, single spaces."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _tokenize(captions: dict[int, list[str]], use_java: bool) -> dict[int, list[str]]:
    if use_java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    return {k: [simple_tokenize(c) for c in v] for k, v in captions.items()}


def caption_metrics(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[str],
    *,
    use_java: bool | None = None,
    meteor: bool = True,
) -> dict[str, float]:
    """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of ``hypotheses`` against all ``references``.

    Args:
        references: per image, every reference caption (raw text).
        hypotheses: per image, the generated caption (raw text).
        use_java: use Java (PTB tokenizer, METEOR); ``None`` = when ``java`` is on PATH.
        meteor: compute METEOR (when Java is used); it starts a JVM, about a second.

    Returns:
        ``{"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"}`` and ``"meteor"`` when Java
        ran it, all in [0, 1] except CIDEr-D (about [0, 10]).
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"references: expected {len(hypotheses)} lists (one per hypothesis), received {len(references)}"
        )
    if not hypotheses:
        raise ValueError("hypotheses: expected at least one caption, received none")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("references: every image needs at least one reference caption")
    from multiattn.extras import require

    require("pycocoevalcap", "the caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D)")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if use_java is None:
        use_java = java_available()
        if not use_java:
            warnings.warn(
                "java not found on PATH: METEOR is skipped and captions are tokenized with the simple "
                "lower-case/punctuation tokenizer instead of the PTB tokenizer",
                stacklevel=2,
            )
    gts = _tokenize({i: list(refs) for i, refs in enumerate(references)}, use_java)
    res = _tokenize({i: [h if h.strip() else EMPTY_HYPOTHESIS] for i, h in enumerate(hypotheses)}, use_java)
    res = {i: [c if c.strip() else EMPTY_HYPOTHESIS for c in caps] for i, caps in res.items()}
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, start=1):
        scores[f"bleu_{n}"] = float(value)
    if use_java and meteor:
        scores["meteor"] = _meteor(gts, res)
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider_d"] = float(Cider().compute_score(gts, res)[0])
    return scores


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        value = float(scorer.compute_score(gts, res)[0])
    finally:
        # Stop the JVM now: the scorer's __del__ may run late (or never) and keeps pipes open.
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
        scorer.meteor_p.stdout.close()
        scorer.meteor_p.stderr.close()
    return value


def attention_box_scores(
    attention: Tensor, boxes: Tensor, image_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Share of attention inside each box, and whether the map's maximum falls inside it.

    Args:
        attention: ``(N, H, W)`` one map per scored word (non-negative; need not sum to 1).
        boxes: ``(N, 4)`` the named object's box ``[x0, y0, x1, y1]`` in image pixels, end exclusive.
        image_size: ``(Hi, Wi)`` of the image the boxes refer to.

    Returns:
        ``(mass (N,), hit (N,) bool)``: mass in [0, 1] after bilinear upsampling to the image size.
    """
    if attention.dim() != 3:
        raise ValueError(f"attention: expected shape (N, H, W), received {tuple(attention.shape)}")
    count = attention.shape[0]
    check_shape("boxes", boxes, (count, 4))
    height, width = int(image_size[0]), int(image_size[1])
    if count == 0:
        return attention.new_zeros(0), torch.zeros(0, dtype=torch.bool, device=attention.device)
    maps = F.interpolate(
        attention.float().unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False
    ).squeeze(1)  # (N, 1, Hi, Wi) -> (N, Hi, Wi)
    maps = maps.clamp_min(0)
    ys = torch.arange(height, device=maps.device).view(1, height, 1)  # (1, Hi, 1)
    xs = torch.arange(width, device=maps.device).view(1, 1, width)  # (1, 1, Wi)
    b = boxes.to(maps.device).long()
    inside = (
        (xs >= b[:, 0, None, None])
        & (xs < b[:, 2, None, None])
        & (ys >= b[:, 1, None, None])
        & (ys < b[:, 3, None, None])
    )  # (N, Hi, Wi)
    total = maps.flatten(1).sum(1).clamp_min(1e-12)  # (N,)
    mass = (maps * inside).flatten(1).sum(1) / total  # (N,)
    peak = maps.flatten(1).argmax(1)  # (N,) flat pixel index
    hit = inside.flatten(1).gather(1, peak.unsqueeze(1)).squeeze(1)  # (N,)
    return mass, hit


def box_cell_coverage(boxes: Tensor, grid_hw: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
    """Share of each grid cell that lies inside each box.

    Args:
        boxes: ``(N, 4)`` ``[x0, y0, x1, y1]`` in image pixels, end exclusive (as the scenes' boxes).
        grid_hw: ``(H, W)`` of the attention grid, which tiles the image evenly.
        image_size: ``(Hi, Wi)`` of the image the boxes refer to.

    Returns:
        ``(N, H, W)`` float32 in ``[0, 1]``: the overlap of cell and box over the cell's area.
    """
    check_shape("boxes", boxes, (None, 4))
    (height, width), (image_h, image_w) = grid_hw, image_size
    b = boxes.float()
    ys = torch.arange(height + 1, device=b.device, dtype=torch.float32) * (image_h / height)  # cell edges
    xs = torch.arange(width + 1, device=b.device, dtype=torch.float32) * (image_w / width)

    def overlap(edges: Tensor, low: Tensor, high: Tensor) -> Tensor:  # (N,), (N,) -> (N, cells)
        start = torch.maximum(edges[None, :-1], low[:, None])
        end = torch.minimum(edges[None, 1:], high[:, None])
        return (end - start).clamp_min(0) / (edges[1:] - edges[:-1])[None]

    return overlap(ys, b[:, 1], b[:, 3])[:, :, None] * overlap(xs, b[:, 0], b[:, 2])[:, None, :]
