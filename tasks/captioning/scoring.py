"""Scene-specific scores of generated captions: object naming and where attention looked.

On the embedded scenes every object's box is known. For a *generated* caption (free-running, not
teacher-forced), each noun phrase ``[size] [colour] shape`` is matched to the one object of the
image with those attributes; its words then "name" that object and their attention maps are
scored with :func:`multiattn.metrics.captioning.attention_box_scores` (share of mass inside the
box, pointing-game hit). A phrase that matches no object, or several, is not scored (counted as
``unmatched``): the attention of a wrong word has no right place.

Naming accuracy: an image is correct when every colour-shape pair its caption names exists in
the image (``pairs_correct``); ``objects_exact`` also asks that the caption names all objects.
The attention scores are also kept per kind of word (size, colour, shape): a shape word's map
often sits on the object's outline, partly outside its box, where a colour word's is inside.

Shape legend: ``T`` caption words, ``H, W`` attention grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from multiattn.metrics.captioning import attention_box_scores
from multiattn.tasks.captioning.sources.scenes import COLOURS, SHAPES, SIZES, colour_shape_pairs

__all__ = ["align_words_to_objects", "SceneScorer"]


def align_words_to_objects(words: Sequence[str], objects: Sequence[dict[str, Any]]) -> tuple[list[int], int]:
    """For each word, the index of the object it names, or -1.

    Returns:
        ``(owners, unmatched)`` where ``unmatched`` counts phrases that match no single object.
    """
    owners = [-1] * len(words)
    unmatched = 0
    for j, word in enumerate(words):
        if word not in SHAPES:
            continue
        span = [j]
        colour = words[j - 1] if j >= 1 and words[j - 1] in COLOURS else None
        if colour is not None:
            span.insert(0, j - 1)
        k = span[0] - 1
        size = words[k] if k >= 0 and words[k] in SIZES else None
        if size is not None:
            span.insert(0, k)
        candidates = [
            i
            for i, obj in enumerate(objects)
            if obj["shape"] == word
            and (colour is None or obj["colour"] == colour)
            and (size is None or obj["size"] == size)
        ]
        if len(candidates) == 1:
            for position in span:
                owners[position] = candidates[0]
        else:
            unmatched += 1
    return owners, unmatched


class SceneScorer:
    """Accumulates naming accuracy and attention scores over generated captions.

    Args:
        image_size: ``(height, width)`` in pixels of the images the boxes refer to.
    """

    KINDS = (("size", SIZES), ("colour", COLOURS), ("shape", SHAPES))
    # Every scored word is of one kind, so the totals over all words are sums of these.
    FIELDS = (
        "images",
        "pairs_correct",
        "objects_exact",
        "unmatched",
        *(f"{field}_{kind}" for kind, _ in KINDS for field in ("words", "mass_sum", "hits")),
    )

    def __init__(self, image_size: tuple[int, int]) -> None:
        self.image_size = image_size
        self.reset()

    def reset(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, 0)

    def add(self, words: Sequence[str], attention: Tensor | None, objects: Sequence[dict[str, Any]]) -> None:
        """Score one caption: ``words``, its per-word ``attention (T, H, W)``, the scene's ``objects``."""
        self.merge(self.score(words, attention, objects))

    def merge(self, counts: dict[str, float]) -> None:
        """Add one image's :meth:`score` (or several images' summed counts)."""
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + counts[name])

    def score(
        self, words: Sequence[str], attention: Tensor | None, objects: Sequence[dict[str, Any]]
    ) -> dict[str, float]:
        """One image's counts (the :attr:`FIELDS`), without adding them: records that travel
        between processes carry these (:mod:`multiattn.tasks.common.distributed`)."""
        named = colour_shape_pairs(list(words))
        truth = {(o["colour"], o["shape"]) for o in objects}
        owners, unmatched = align_words_to_objects(words, objects)
        counts: dict[str, float] = dict.fromkeys(self.FIELDS, 0)
        counts.update(
            images=1,
            pairs_correct=int(all(pair in truth for pair in named)),
            objects_exact=int(set(named) == truth and len(named) == len(truth)),
            unmatched=unmatched,
        )
        scored = [t for t, owner in enumerate(owners) if owner >= 0]
        if attention is None or not scored:
            return counts
        maps = attention[scored]  # (n, H, W)
        boxes = torch.tensor([objects[owners[t]]["box"] for t in scored], dtype=torch.long)  # (n, 4)
        mass, hit = attention_box_scores(maps, boxes, self.image_size)
        for kind, vocabulary in self.KINDS:
            of_kind = torch.tensor([words[t] in vocabulary for t in scored])  # (n,)
            counts[f"words_{kind}"] = int(of_kind.sum())
            counts[f"mass_sum_{kind}"] = float(mass[of_kind].sum())
            counts[f"hits_{kind}"] = int(hit[of_kind].sum())
        return counts

    def compute(self) -> dict[str, float]:
        """``pairs_correct``, ``objects_exact`` (shares of images), ``attention_mass``,
        ``pointing_game`` (over scored object words), the same two per kind of word
        (``attention_mass_shape``, ``pointing_game_colour``, ...), ``object_words`` and
        ``unmatched_phrases`` (counts)."""

        def total(field: str) -> float:
            return sum(getattr(self, f"{field}_{kind}") for kind, _ in self.KINDS)

        images = max(self.images, 1)
        words = max(total("words"), 1)
        scores = {
            "pairs_correct": self.pairs_correct / images,
            "objects_exact": self.objects_exact / images,
            "attention_mass": total("mass_sum") / words,
            "pointing_game": total("hits") / words,
            "object_words": float(total("words")),
            "unmatched_phrases": float(self.unmatched),
        }
        for kind, _ in self.KINDS:
            count = max(getattr(self, f"words_{kind}"), 1)
            scores[f"attention_mass_{kind}"] = getattr(self, f"mass_sum_{kind}") / count
            scores[f"pointing_game_{kind}"] = getattr(self, f"hits_{kind}") / count
        return scores
