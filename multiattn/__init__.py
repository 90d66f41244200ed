"""multiattn: a shared attention core (pure PyTorch; importing it never imports Lightning).

The pieces most users reach for are re-exported here; everything else lives in its submodule
(``multiattn.attention``, ``multiattn.transformer``, ``multiattn.decoding``, ``multiattn.stn``,
``multiattn.viz``, ...). See docs/architecture.md. ``multiattn.load(checkpoint)`` returns a trained
task's pipeline (docs/python.md).
"""

from multiattn.attention import (
    AdditiveAttention,
    LinearAttention,
    LocationAwareAttention,
    MultiHeadAttention,
    SoftSpatialAttention,
    build_attention,
)
from multiattn.decoding import CTCPrefixScorer, Hypothesis, StepOutput, beam_search, greedy_search
from multiattn.masks import build_attention_mask, causal_mask, lengths_to_mask
from multiattn.pipeline import load
from multiattn.recording import AttentionMap, AttentionRecorder, is_recording, record_attention
from multiattn.stn import SpatialTransformer, theta_to_corners, warp
from multiattn.transformer import TransformerDecoder, TransformerEncoder

__version__ = "0.1.0"

__all__ = [
    "AdditiveAttention",
    "AttentionMap",
    "AttentionRecorder",
    "CTCPrefixScorer",
    "Hypothesis",
    "LinearAttention",
    "LocationAwareAttention",
    "MultiHeadAttention",
    "SoftSpatialAttention",
    "SpatialTransformer",
    "StepOutput",
    "TransformerDecoder",
    "TransformerEncoder",
    "beam_search",
    "build_attention",
    "build_attention_mask",
    "causal_mask",
    "greedy_search",
    "is_recording",
    "lengths_to_mask",
    "load",
    "record_attention",
    "theta_to_corners",
    "warp",
]
