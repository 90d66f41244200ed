"""Metrics computed the way each field does (captioning: pycocoevalcap; speech: jiwer)."""

from multiattn.metrics.captioning import (
    CAPTION_METRIC_NAMES,
    attention_box_scores,
    caption_metrics,
    java_available,
    simple_tokenize,
)
