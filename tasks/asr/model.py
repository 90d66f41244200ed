"""Hybrid CTC/attention speech recogniser (the ``nn.Module``; no Lightning).

Kim, Hori and Watanabe 2017, "Joint CTC-Attention based End-to-End Speech Recognition using
Multi-task Learning"; Watanabe et al. 2017, "Hybrid CTC/Attention Architecture for End-to-End
Speech Recognition". One shared encoder feeds

* a CTC head (a linear layer to ``V`` outputs, blank = id 0), whose monotonic alignments
  regularise the encoder and, at decoding time, stop the attention decoder from looping or
  ending early; and
* an attention decoder (:mod:`multiattn.tasks.asr.decoders`) predicting the next character from the
  previous ones and the encoder frames.

Pipeline: waveform -> log-mel + normalisation (+ SpecAugment in training)
(:class:`~multiattn.tasks.asr.features.LogMelFeatures`) -> 4x convolutional subsampling
(:class:`~multiattn.subsampling.Conv2dSubsampling`) -> sinusoidal positions -> encoder
(:mod:`multiattn.tasks.asr.encoders`) -> CTC head and decoder.

One encoder frame covers 40 ms: frame ``s`` is centred at :func:`frame_time` ``(s)`` seconds.

Shape legend: ``B`` batch, ``N`` samples / hypotheses, ``L`` feature frames, ``F`` mel bins,
``S`` encoder frames, ``D`` embed_dim, ``T`` target tokens, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from multiattn.builders import fields, pick
from multiattn.configs import to_plain
from multiattn.conformer import ConformerEncoder
from multiattn.decoding.types import StepOutput
from multiattn.positional import SinusoidalPositionalEncoding
from multiattn.subsampling import Conv2dSubsampling, subsampled_length
from multiattn.tasks.asr.decoders import LocationLSTMDecoder, TransformerAttentionDecoder
from multiattn.tasks.asr.encoders import BiLSTMEncoder
from multiattn.tasks.asr.features import HOP_SECONDS, WINDOW_SECONDS, LogMelFeatures, feature_lengths
from multiattn.transformer import TransformerEncoder

__all__ = [
    "ASRModelConfig",
    "FeaturesConfig",
    "EncoderConfig",
    "DecoderConfig",
    "ASRModel",
    "ENCODERS",
    "DECODERS",
    "build_model",
    "EncoderOutput",
    "ModelOutput",
    "frame_time",
    "FRAME_SECONDS",
]

FRAME_SECONDS = 4 * HOP_SECONDS  # 40 ms per encoder frame after 4x subsampling


def frame_time(frame: Tensor | float) -> Tensor | float:
    """Centre time in seconds of encoder frame ``frame`` (reads feature frames ``4s .. 4s + 6``)."""
    return (4 * frame + 3) * HOP_SECONDS + WINDOW_SECONDS / 2


class EncoderOutput(NamedTuple):
    """Encoder frames and the features they came from.

    Attributes:
        memory: ``(B, S, D)`` encoder output, zero past ``lengths``.
        lengths: ``(B,)`` valid encoder frames.
        features: ``(B, L, F)`` normalised log-mels (after SpecAugment in training).
        feature_lengths: ``(B,)`` valid feature frames.
    """

    memory: Tensor
    lengths: Tensor
    features: Tensor
    feature_lengths: Tensor


class ModelOutput(NamedTuple):
    """Training outputs: CTC log-probabilities and teacher-forced decoder logits.

    Attributes:
        ctc_log_probs: ``(B, S, V)`` float32.
        encoder_lengths: ``(B,)``.
        decoder_logits: ``(B, T + 1, V)`` for inputs ``[bos, y_1..y_T]`` (targets ``[y_1..y_T, eos]``).
    """

    ctc_log_probs: Tensor
    encoder_lengths: Tensor
    decoder_logits: Tensor


class ASRModel(nn.Module):
    """Log-mel front end, subsampling, encoder, CTC head and attention decoder.

    Args:
        config: the recogniser (:class:`ASRModelConfig`; its defaults when ``None``). Encoder and
            decoder are picked by name from :data:`ENCODERS` / :data:`DECODERS`.
        vocab_size: ``V`` (blank = pad = 0, bos = eos = 1).
    """

    def __init__(self, config: ASRModelConfig | None = None, *, vocab_size: int) -> None:
        super().__init__()
        config = ASRModelConfig() if config is None else config
        self.vocab_size = vocab_size
        self.blank_id, self.bos_id, self.eos_id = 0, 1, 1
        features, encoder, decoder = config.features, config.encoder, config.decoder
        self.features = LogMelFeatures(**to_plain(features))  # FeaturesConfig names its arguments
        self.subsampling = Conv2dSubsampling(
            input_dim=features.num_mels,
            embed_dim=config.embed_dim,
            channels=encoder.subsampling_channels,
            dropout=config.dropout,
        )
        # Recurrent encoders know order already; attention encoders need positions.
        self.positions = (
            None
            if encoder.name == "bilstm"
            else SinusoidalPositionalEncoding(config.embed_dim, 8192, dropout=config.dropout)
        )
        shared = dict(embed_dim=config.embed_dim, num_heads=config.num_heads, dropout=config.dropout)
        self.encoder = pick(ENCODERS, encoder.name, what="encoder")(encoder, **shared)
        self.ctc_head = nn.Linear(config.embed_dim, vocab_size)
        self.decoder = pick(DECODERS, decoder.name, what="decoder")(decoder, vocab_size=vocab_size, **shared)

    @staticmethod
    def encoder_lengths(num_samples: Tensor) -> Tensor:
        """Encoder frames produced from ``(B,)`` sample counts."""
        return subsampled_length(feature_lengths(num_samples))

    def encode(self, waveform: Tensor, lengths: Tensor) -> EncoderOutput:
        """``waveform (B, N)``, ``lengths (B,)`` samples -> :class:`EncoderOutput`."""
        feats, frames = self.features(waveform, lengths)  # (B, L, F)
        x, enc_lengths = self.subsampling(feats, frames)  # (B, S, D)
        if self.positions is not None:
            x = self.positions(x)
        memory, enc_lengths = self.encoder(x, enc_lengths)
        return EncoderOutput(memory, enc_lengths, feats, frames)

    def ctc_log_probs(self, memory: Tensor) -> Tensor:
        """``(B, S, D) -> (B, S, V)`` float32 log-probabilities."""
        return self.ctc_head(memory).float().log_softmax(dim=-1)

    def forward(
        self, waveform: Tensor, lengths: Tensor, tokens_in: Tensor, token_lengths: Tensor
    ) -> ModelOutput:
        """Training forward pass.

        Args:
            waveform: ``(B, N)`` 16 kHz samples.
            lengths: ``(B,)`` valid samples.
            tokens_in: ``(B, T + 1)`` decoder inputs ``[bos, y_1 .. y_T]`` padded with 0.
            token_lengths: ``(B,)`` ``T + 1`` per row.
        """
        enc = self.encode(waveform, lengths)
        logits = self.decoder(tokens_in, enc.memory, enc.lengths, tgt_lengths=token_lengths)
        return ModelOutput(self.ctc_log_probs(enc.memory), enc.lengths, logits)

    # ----------------------------------------------------------------- decoding hooks
    def init_decoder_state(self, memory: Tensor, memory_lengths: Tensor) -> Any:
        """The decoder's initial incremental state for ``B`` utterances (rows reorderable)."""
        return self.decoder.init_state(memory, memory_lengths)

    def make_step_fn(self, *, return_attention: bool = False):
        """A ``step_fn(tokens (N, t), state) -> StepOutput`` for :mod:`multiattn.decoding` (blank never emitted)."""

        def step_fn(tokens: Tensor, state: Any) -> StepOutput:
            log_probs, state, attention = self.decoder.step(tokens, state, return_attention=return_attention)
            # Blank is the decoder's padding, never an output: an undertrained decoder (or a
            # fused language model) must not emit it (CTC alignment of such a text is undefined).
            log_probs = log_probs.float().index_fill(
                1, torch.tensor([self.blank_id], device=log_probs.device), float("-inf")
            )
            return StepOutput(log_probs, state, attention)

        return step_fn


@dataclass(frozen=True)
class FeaturesConfig:
    """The log-mel front end and its training-time augmentation (:class:`~multiattn.tasks.asr.features.LogMelFeatures`).

    Attributes:
        num_mels: mel bins F.
        normalization: utterance (each utterance's mean / std per bin), global (fixed) or none.
        spec_augment: SpecAugment masks in training.
        freq_mask_param: widest frequency mask (bins).
        num_freq_masks: frequency masks per utterance.
        time_mask_ratio: widest time mask as a share of the utterance.
        num_time_masks: time masks per utterance.
        speed_perturb: speed factors drawn per utterance in training (empty: none).
    """

    num_mels: int = 80
    normalization: Literal["utterance", "global", "none"] = "utterance"
    spec_augment: bool = True
    freq_mask_param: int = 27
    num_freq_masks: int = 2
    time_mask_ratio: float = 0.05
    num_time_masks: int = 2
    speed_perturb: tuple[float, ...] = ()


@dataclass(frozen=True)
class EncoderConfig:
    """The acoustic encoder after the 4x convolutional subsampling.

    Attributes:
        name: conformer, transformer or bilstm.
        num_layers: encoder depth.
        ff_dim: feed-forward size.
        conv_kernel_size: conformer: depthwise convolution kernel.
        subsampling_channels: channels of the subsampling convolutions.
    """

    name: Literal["conformer", "transformer", "bilstm"] = "conformer"
    num_layers: int = 4
    ff_dim: int = 576
    conv_kernel_size: int = 15
    subsampling_channels: int = 64


@dataclass(frozen=True)
class DecoderConfig:
    """The attention decoder.

    Attributes:
        name: transformer (the core's token decoder) or location (LSTM with location-aware attention).
        num_layers: transformer: decoder depth.
        ff_dim: transformer: feed-forward size; location: LSTM state size.
        alignment_layer: transformer: the layer whose cross-attention is the alignment (-1 = last).
    """

    name: Literal["transformer", "location"] = "transformer"
    num_layers: int = 2
    ff_dim: int = 576
    alignment_layer: int = -1


@dataclass(frozen=True)
class ASRModelConfig:
    """The recogniser: front end, encoder, CTC head and attention decoder.

    Attributes:
        embed_dim: model dimension D (encoder output, decoder, token embedding).
        num_heads: attention heads (encoder and transformer decoder).
        dropout: dropout everywhere.
        features: the log-mel front end.
        encoder: the acoustic encoder.
        decoder: the attention decoder.
    """

    embed_dim: int = 144
    num_heads: int = 4
    dropout: float = 0.1
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


def _conformer(config: EncoderConfig, **shared: Any) -> nn.Module:
    return ConformerEncoder(
        **shared, **fields(config, "num_layers", "ff_dim"), kernel_size=config.conv_kernel_size
    )


def _transformer_encoder(config: EncoderConfig, **shared: Any) -> nn.Module:
    return TransformerEncoder(**shared, **fields(config, "num_layers", "ff_dim"))


def _bilstm(config: EncoderConfig, *, embed_dim: int, num_heads: int, dropout: float) -> nn.Module:
    return BiLSTMEncoder(embed_dim=embed_dim, num_layers=config.num_layers, dropout=dropout)


ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "conformer": _conformer,
    "transformer": _transformer_encoder,
    "bilstm": _bilstm,
}
"""Encoder name -> builder of the encoder from its config and the model's shared sizes
(``embed_dim``, ``num_heads``, ``dropout``)."""


def _transformer_decoder(config: DecoderConfig, **shared: Any) -> nn.Module:
    return TransformerAttentionDecoder(**shared, **fields(config, "num_layers", "ff_dim", "alignment_layer"))


def _location(
    config: DecoderConfig, *, vocab_size: int, embed_dim: int, dropout: float, **_: Any
) -> nn.Module:
    # The LSTM's state size is the decoder's ff_dim; the attention is as wide as the encoder.
    return LocationLSTMDecoder(
        vocab_size=vocab_size,
        embed_dim=embed_dim,
        hidden_dim=config.ff_dim,
        attn_dim=embed_dim,
        dropout=dropout,
    )


DECODERS: dict[str, Callable[..., nn.Module]] = {"transformer": _transformer_decoder, "location": _location}
"""Decoder name -> builder of the decoder from its config, the vocabulary size and the model's
shared sizes (``embed_dim``, ``num_heads``, ``dropout``)."""


def build_model(config: ASRModelConfig, *, vocab_size: int) -> ASRModel:
    """The :class:`ASRModel` that ``config`` describes, for ``vocab_size`` output tokens."""
    return ASRModel(config, vocab_size=vocab_size)
