"""Shared decoding: greedy search, batched beam search, and CTC prefix scoring.

One search serves every task: captioning and speech give a ``step_fn`` (see
:mod:`multiattn.decoding.types`); speech adds a :class:`CTCPrefixScorer` for joint
CTC/attention decoding (Watanabe et al. 2017), and a language model joins any search by
:func:`shallow_fusion`.
"""

from multiattn.decoding.beam import PrefixScorer, beam_search, length_normaliser
from multiattn.decoding.ctc import CTCCandidates, CTCPrefixScorer, CTCPrefixState, ctc_greedy_decode
from multiattn.decoding.fusion import FusedState, StepLanguageModel, shallow_fusion
from multiattn.decoding.greedy import greedy_search
from multiattn.decoding.grouping import ItemMemory, QueryGroups, consecutive_groups, reindex_items
from multiattn.decoding.types import Hypothesis, StepOutput, expand_state, reorder_state

__all__ = [
    "StepOutput",
    "Hypothesis",
    "reorder_state",
    "expand_state",
    "greedy_search",
    "beam_search",
    "length_normaliser",
    "PrefixScorer",
    "CTCPrefixScorer",
    "CTCPrefixState",
    "CTCCandidates",
    "ctc_greedy_decode",
    "shallow_fusion",
    "FusedState",
    "StepLanguageModel",
    "ItemMemory",
    "QueryGroups",
    "consecutive_groups",
    "reindex_items",
]
