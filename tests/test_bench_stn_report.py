"""bench_stn's breakdown by digit height: which bin each digit lands in, and the table it writes."""

from __future__ import annotations

import torch

from benchmarks.bench_stn import _by_digit_height, _markdown


def test_digits_are_binned_by_height_on_the_60_pixel_scale():
    heights = torch.tensor([10.0, 15.0, 17.9, 20.0, 31.0, 40.0])
    iou = torch.tensor([0.9, 0.2, 0.8, 0.7, 0.4, 0.6])
    ratio = torch.tensor([2.0, 1.0, 1.2, 1.0, 0.8, 0.6])
    rows = {row["height"]: row for row in _by_digit_height(iou, ratio, heights, canvas=60)}
    assert list(rows) == ["<14", "14-18", "18-22", ">=30"]  # empty bins are left out
    assert rows["14-18"] == {"height": "14-18", "images": 2, "iou50": 0.5, "region_height_ratio": 1.0}
    assert rows[">=30"]["images"] == 2 and rows[">=30"]["iou50"] == 0.5
    # On a 120-px canvas the edges double: 20 px is then a small digit, 31 and 40 px mid-sized.
    doubled = {row["height"]: row["images"] for row in _by_digit_height(iou, ratio, heights, canvas=120)}
    assert doubled == {"<14": 4, "14-18": 1, "18-22": 1}


def test_the_report_has_a_row_per_run_and_split_with_bins():
    by_height = [{"height": "14-18", "images": 3, "iou50": 0.6667, "region_height_ratio": 1.1}]
    scores = {"accuracy": 0.99, "error": 0.01, "images": 3, "mean_iou": 0.7, "iou50": 0.6667}
    result = {
        "config": "configs/stn.yaml",
        "variety": "varied",
        "runs": {"stn": {"splits": {"out_of_generator": {**scores, "by_height": by_height}}}},
    }
    text = _markdown(result)
    assert "| stn | out-of-generator | - | 66.7% / 1.10 / 3 | - | - | - | - |" in text
