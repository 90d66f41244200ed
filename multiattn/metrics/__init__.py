"""Metrics computed the way each field does (captioning: pycocoevalcap; speech: jiwer)."""

from multiattn.metrics.captioning import CAPTION_METRIC_NAMES as CAPTION_METRIC_NAMES
from multiattn.metrics.captioning import attention_box_scores as attention_box_scores
from multiattn.metrics.captioning import caption_metrics as caption_metrics
from multiattn.metrics.captioning import java_available as java_available
from multiattn.metrics.captioning import simple_tokenize as simple_tokenize
from multiattn.metrics.speech import boundary_errors as boundary_errors
from multiattn.metrics.speech import error_counts as error_counts
