"""Scene scoring of generated captions: phrase -> object matching, naming accuracy, attention scores."""

from __future__ import annotations

import pytest
import torch

from multiattn.tasks.captioning.scoring import SceneScorer, align_words_to_objects

OBJECTS = [
    {"shape": "circle", "colour": "red", "size": "small", "box": [0, 0, 32, 32]},
    {"shape": "square", "colour": "blue", "size": "large", "box": [64, 64, 96, 96]},
]


def test_alignment_of_generated_words():
    words = "a small red circle left of a large blue square".split()
    owners, unmatched = align_words_to_objects(words, OBJECTS)
    assert owners == [-1, 0, 0, 0, -1, -1, -1, 1, 1, 1] and unmatched == 0
    owners, unmatched = align_words_to_objects("a green circle".split(), OBJECTS)
    assert owners == [-1, -1, -1] and unmatched == 1


def test_scene_scorer():
    scorer = SceneScorer((96, 96))
    words = "a small red circle left of a large blue square".split()
    attention = torch.zeros(len(words), 3, 3)
    attention[:, 0, 0] = 1.0  # always looks top-left: right for the circle, wrong for the square
    scorer.add(words, attention, OBJECTS)
    scorer.add("a small green circle".split(), torch.ones(4, 3, 3), OBJECTS)
    scores = scorer.compute()
    assert scores["pairs_correct"] == pytest.approx(0.5)
    assert scores["objects_exact"] == pytest.approx(0.5)
    assert scores["pointing_game"] == pytest.approx(0.5)  # 3 hits of 6 scored words
    assert scores["object_words"] == 6 and scores["unmatched_phrases"] == 1
    # bilinear upsampling spreads the one-hot cell a little outside its 32-px box: ~0.77 for the
    # circle words, 0 for the square words
    assert 0.3 < scores["attention_mass"] < 0.5


def test_scene_scorer_keeps_scores_per_kind_of_word():
    words = "a small red circle left of a large blue square".split()
    attention = torch.zeros(len(words), 3, 3)
    attention[:, 0, 0] = 1.0  # top-left: on the circle
    attention[9] = 0.0
    attention[9, 2, 2] = 1.0  # "square" looks bottom-right, at the square
    scorer = SceneScorer((96, 96))
    scorer.add(words, attention, OBJECTS)
    scores = scorer.compute()
    assert scores["pointing_game_size"] == 0.5 and scores["pointing_game_colour"] == 0.5
    assert scores["pointing_game_shape"] == 1.0 and scores["pointing_game"] == pytest.approx(4 / 6)
    assert scores["attention_mass_shape"] > scores["attention_mass_size"] > 0
    # The per-kind counts travel with the record (several processes) and add up.
    merged = SceneScorer((96, 96))
    merged.merge(scorer.score(words, attention, OBJECTS))
    merged.merge(scorer.score(words, attention, OBJECTS))
    shares = {key: value for key, value in scores.items() if key not in ("object_words", "unmatched_phrases")}
    assert {key: merged.compute()[key] for key in shares} == pytest.approx(shares) and merged.words_shape == 4
