"""Captioning metrics: pycocoevalcap scorers one by one, Java fallback, attention-in-box scores."""

from __future__ import annotations

import pytest
import torch

from multiattn.metrics.captioning import (
    attention_box_scores,
    box_cell_coverage,
    caption_metrics,
    java_available,
    simple_tokenize,
)

REFS = [
    ["a large red circle", "there is a large red circle", "A large red circle."],
    ["a small blue square left of a green circle", "a green circle right of a small blue square"],
    ["a yellow triangle above a red square", "there is a yellow triangle above a red square"],
]


def test_simple_tokenizer():
    assert simple_tokenize("A dog's ball, RED!") == "a dog's ball red"


def test_perfect_captions_score_one_without_java():
    scores = caption_metrics(REFS, ["A large red circle!", REFS[1][0], REFS[2][1]], use_java=False)
    assert set(scores) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"}  # no METEOR
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert scores[name] == pytest.approx(1.0, abs=1e-6)
    assert scores["cider_d"] > 1.0


def test_corpus_level_bleu_and_worse_captions_score_lower():
    good = caption_metrics(REFS, [REFS[0][0], REFS[1][0], REFS[2][0]], use_java=False)
    bad = caption_metrics(
        REFS, ["a large red circle", "a small blue square", "a red triangle"], use_java=False
    )
    assert bad["bleu_4"] < good["bleu_4"] and bad["cider_d"] < good["cider_d"]
    # corpus level: not the mean of sentence-level scores (the third sentence alone has no 4-gram match)
    single = [
        caption_metrics([r], [h], use_java=False)["bleu_4"]
        for r, h in zip(REFS, ["a large red circle", "a small blue square", "a red triangle"])
    ]
    assert bad["bleu_4"] != pytest.approx(sum(single) / 3)


def test_all_references_count():
    one_ref = caption_metrics([[REFS[1][0]]], [REFS[1][1]], use_java=False)
    all_refs = caption_metrics([REFS[1]], [REFS[1][1]], use_java=False)
    assert all_refs["bleu_4"] > one_ref["bleu_4"]


def test_empty_hypothesis_and_bad_arguments():
    scores = caption_metrics(REFS[:1], [""], use_java=False)
    assert scores["bleu_1"] < 0.01
    with pytest.raises(ValueError, match="one per hypothesis"):
        caption_metrics(REFS, ["a"], use_java=False)
    with pytest.raises(ValueError, match="at least one reference"):
        caption_metrics([[]], ["a"], use_java=False)


def test_missing_java_is_said_clearly(monkeypatch):
    monkeypatch.setattr("multiattn.metrics.captioning.java_available", lambda: False)
    with pytest.warns(UserWarning, match="java not found.*METEOR is skipped"):
        scores = caption_metrics(REFS[:1], ["a large red circle"])
    assert "meteor" not in scores


@pytest.mark.skipif(not java_available(), reason="java not installed")
def test_java_path_gives_meteor_and_ptb_tokens():
    scores = caption_metrics(REFS, ["A large red circle.", REFS[1][0], REFS[2][1]], use_java=True)
    assert scores["meteor"] == pytest.approx(1.0, abs=1e-3)
    assert scores["bleu_4"] == pytest.approx(1.0, abs=1e-6)


def test_attention_box_scores():
    attention = torch.zeros(3, 4, 4)
    attention[0, 0, 0] = 1.0  # all mass in the top-left cell
    attention[1] = 1.0 / 16  # uniform
    attention[2, 3, 3] = 1.0  # bottom-right
    boxes = torch.tensor([[0, 0, 16, 16], [0, 0, 16, 16], [0, 0, 16, 16]])
    mass, hit = attention_box_scores(attention, boxes, (32, 32))
    assert mass[0] > 0.9 and hit[0]
    assert mass[1] == pytest.approx(0.25, abs=1e-6)
    assert mass[2] < 0.05 and not hit[2]
    empty_mass, empty_hit = attention_box_scores(torch.zeros(0, 4, 4), torch.zeros(0, 4), (32, 32))
    assert empty_mass.shape == (0,) and empty_hit.shape == (0,)
    with pytest.raises(ValueError, match="boxes"):
        attention_box_scores(attention, boxes[:2], (32, 32))


def test_box_cell_coverage_is_each_cells_share_of_the_box():
    # On a 96-pixel image a 12x12 grid has 8-pixel cells: a box on cell edges covers whole cells,
    # one that ends mid-cell half of it.
    cover = box_cell_coverage(torch.tensor([[8, 16, 28, 24]]), (12, 12), (96, 96))[0]
    assert cover.shape == (12, 12)
    assert cover[2, 1:4].tolist() == [1.0, 1.0, 0.5] and float(cover.sum()) == 2.5
    # Invariance: cell areas times coverage sum to the box's area, whatever the grid.
    generator = torch.Generator().manual_seed(0)
    low = torch.randint(0, 60, (20, 2), generator=generator)
    boxes = torch.cat([low, low + torch.randint(1, 36, (20, 2), generator=generator)], dim=1)
    for grid in [(12, 12), (7, 9), (16, 16)]:
        cover = box_cell_coverage(boxes, grid, (96, 96))
        cell_area = (96 / grid[0]) * (96 / grid[1])
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).float()
        torch.testing.assert_close(cover.sum(dim=(1, 2)) * cell_area, area)
        assert float(cover.min()) >= 0.0 and float(cover.max()) <= 1.0
