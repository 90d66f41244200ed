"""Decoding a batch of utterances: CTC greedy, attention beam search, joint CTC/attention.

All searches are the core's (:mod:`multiattn.decoding`); this module only wires the speech model
into them.

* ``"ctc"``: best-path CTC (arg-max per frame, merge repeats, drop blanks; Graves et al. 2006).
* ``"attention"``: batched beam search over the attention decoder (greedy search at beam 1).
* a language model (``language_model``, ``lm_weight > 0``) joins the attention and joint searches
  by shallow fusion (:func:`multiattn.decoding.shallow_fusion`): the decoder's log-probs become
  ``log p_att + lm_weight log p_lm`` (so in joint decoding its pre-beam ranking uses it too).
* ``"joint"``: one-pass joint CTC/attention beam search (Watanabe et al. 2017, "Hybrid
  CTC/Attention Architecture"): each extension scores ``(1 - w) log p_att + w delta log p_ctc``,
  the CTC prefix score computed only for the ``1.5 K`` candidates the attention ranks best, for
  all utterances and beams at once (:class:`multiattn.decoding.CTCPrefixScorer`). The CTC term
  forbids ending before the audio is covered and penalises repeated words, which cures the
  attention decoder's loops; the length limit is the number of encoder frames (a CTC path
  cannot emit more labels than frames).

Shape legend: ``B`` batch, ``N`` samples, ``S`` encoder frames, ``V`` vocabulary, ``T`` tokens,
``L`` feature frames, ``F`` mel bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from multiattn.decoding import CTCPrefixScorer, beam_search, ctc_greedy_decode, greedy_search, shallow_fusion
from multiattn.language_model import LSTMLanguageModel
from multiattn.tasks.asr.model import ASRModel
from multiattn.tasks.asr.tokenizer import Tokenizer

__all__ = ["DecodeResult", "DECODING_MODES", "decode_batch"]

DECODING_MODES = ("ctc", "attention", "joint")


@dataclass
class DecodeResult:
    """One decoded utterance.

    Attributes:
        tokens: output token ids (no bos/eos).
        text: the decoded text.
        ctc_log_probs: ``(S, V)`` CTC log-probabilities over the valid encoder frames (CPU).
        features: ``(L, F)`` log-mel features of the valid frames (CPU).
        attention: ``(steps, S)`` decoder attention of the best hypothesis, when requested and
            the mode uses the decoder; else ``None``.
        score: the search's score of the hypothesis (0 for CTC greedy).
    """

    tokens: list[int]
    text: str
    ctc_log_probs: Tensor
    features: Tensor
    attention: Tensor | None
    score: float


@torch.no_grad()
def decode_batch(
    model: ASRModel,
    tokenizer: Tokenizer,
    waveform: Tensor,
    lengths: Tensor,
    *,
    mode: str = "joint",
    beam_size: int = 10,
    ctc_weight: float = 0.3,
    length_penalty: float = 1.0,
    language_model: LSTMLanguageModel | None = None,
    lm_weight: float = 0.0,
    return_attention: bool = False,
) -> list[DecodeResult]:
    """Transcribe ``waveform (B, N)`` with valid ``lengths (B,)`` samples.

    Args:
        model: the recogniser (its train / eval mode is respected; call ``eval()`` first).
        tokenizer: maps ids to text.
        waveform: ``(B, N)`` 16 kHz samples.
        lengths: ``(B,)``.
        mode: one of :data:`DECODING_MODES`.
        beam_size: ``K`` for the attention / joint searches (1 = greedy for ``"attention"``).
        ctc_weight: ``w`` of joint decoding (``"joint"`` with ``w = 0`` equals ``"attention"``).
        length_penalty: GNMT length-normalisation exponent of the beam search.
        language_model: fused into the attention / joint searches when ``lm_weight > 0``.
        lm_weight: shallow-fusion weight (module docstring); ``0`` leaves the searches unchanged.
        return_attention: keep the decoder attention of each best hypothesis (slower: the
            attention modules then compute explicit weights).
    """
    if mode not in DECODING_MODES:
        raise ValueError(f"mode: expected one of {list(DECODING_MODES)}, received {mode!r}")
    enc = model.encode(waveform, lengths)
    log_probs = model.ctc_log_probs(enc.memory)  # (B, S, V)
    batch = waveform.shape[0]
    attention: list[Tensor | None] = [None] * batch
    scores = [0.0] * batch
    if mode == "ctc":
        token_lists = ctc_greedy_decode(log_probs, enc.lengths, blank_id=model.blank_id)
    else:
        state = model.init_decoder_state(enc.memory, enc.lengths)
        step_fn = model.make_step_fn(return_attention=return_attention)
        if language_model is not None and lm_weight > 0:
            step_fn, init_fused = shallow_fusion(step_fn, language_model, lm_weight=lm_weight)
            state = init_fused(state, batch)
        max_len = enc.lengths.clamp(min=1).cpu()
        if mode == "attention" and beam_size == 1:
            hyps = greedy_search(
                step_fn, state, batch_size=batch, bos_id=model.bos_id, eos_id=model.eos_id, max_len=max_len
            )
        else:
            scorer = None
            if mode == "joint" and ctc_weight > 0:
                scorer = CTCPrefixScorer(log_probs, enc.lengths, blank_id=model.blank_id, eos_id=model.eos_id)
            hyps = beam_search(
                step_fn,
                state,
                batch_size=batch,
                beam_size=beam_size,
                bos_id=model.bos_id,
                eos_id=model.eos_id,
                max_len=max_len,
                length_penalty=length_penalty,
                ctc_scorer=scorer,
                ctc_weight=ctc_weight if mode == "joint" else 0.0,
            )
        token_lists = [h.tokens for h in hyps]
        scores = [float(h.score) for h in hyps]
        attention = [None if h.attention is None else h.attention.float().cpu() for h in hyps]
    results = []
    for b in range(batch):
        frames, feat_frames = int(enc.lengths[b]), int(enc.feature_lengths[b])
        results.append(
            DecodeResult(
                tokens=list(token_lists[b]),
                text=tokenizer.decode(token_lists[b]),
                ctc_log_probs=log_probs[b, :frames].float().cpu(),
                features=enc.features[b, :feat_frames].float().cpu(),
                attention=attention[b],
                score=scores[b],
            )
        )
    return results
