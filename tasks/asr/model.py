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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from multiattn.decoding.types import StepOutput
from multiattn.positional import SinusoidalPositionalEncoding
from multiattn.subsampling import Conv2dSubsampling, subsampled_length
from multiattn.tasks.asr.decoders import build_decoder
from multiattn.tasks.asr.encoders import build_encoder
from multiattn.tasks.asr.features import HOP_SECONDS, WINDOW_SECONDS, LogMelFeatures, feature_lengths

__all__ = [
    "ASRModelConfig",
    "FeaturesConfig",
    "EncoderConfig",
    "DecoderConfig",
    "ASRModel",
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
        vocab_size: ``V`` (blank = pad = 0, bos = eos = 1).
        num_mels: ``F``.
        embed_dim: ``D``.
        num_heads: attention heads (encoder and Transformer decoder).
        encoder: ``"conformer"``, ``"transformer"`` or ``"bilstm"``.
        encoder_layers: encoder depth.
        encoder_ff_dim: encoder feed-forward size.
        conv_kernel_size: Conformer depthwise kernel.
        decoder: ``"transformer"`` or ``"location"``.
        decoder_layers: Transformer decoder depth.
        decoder_ff_dim: decoder feed-forward size (LSTM state size for ``"location"``).
        subsampling_channels: channels of the subsampling convolutions.
        dropout: dropout everywhere.
        normalization / spec_augment / freq_mask_param / num_freq_masks / time_mask_ratio /
            num_time_masks / speed_perturb: see :class:`~multiattn.tasks.asr.features.LogMelFeatures`.
        alignment_layer: Transformer decoder layer whose cross-attention is the alignment.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        num_mels: int = 80,
        embed_dim: int = 144,
        num_heads: int = 4,
        encoder: str = "conformer",
        encoder_layers: int = 4,
        encoder_ff_dim: int = 576,
        conv_kernel_size: int = 15,
        decoder: str = "transformer",
        decoder_layers: int = 2,
        decoder_ff_dim: int = 576,
        subsampling_channels: int = 64,
        dropout: float = 0.1,
        normalization: str = "utterance",
        spec_augment: bool = True,
        freq_mask_param: int = 27,
        num_freq_masks: int = 2,
        time_mask_ratio: float = 0.05,
        num_time_masks: int = 2,
        speed_perturb: Sequence[float] = (),
        alignment_layer: int = -1,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.blank_id, self.bos_id, self.eos_id = 0, 1, 1
        self.features = LogMelFeatures(
            num_mels=num_mels,
            normalization=normalization,
            spec_augment=spec_augment,
            freq_mask_param=freq_mask_param,
            num_freq_masks=num_freq_masks,
            time_mask_ratio=time_mask_ratio,
            num_time_masks=num_time_masks,
            speed_perturb=speed_perturb,
        )
        self.subsampling = Conv2dSubsampling(
            input_dim=num_mels, embed_dim=embed_dim, channels=subsampling_channels, dropout=dropout
        )
        # Recurrent encoders know order already; attention encoders need positions.
        self.positions = (
            None if encoder == "bilstm" else SinusoidalPositionalEncoding(embed_dim, 8192, dropout=dropout)
        )
        self.encoder = build_encoder(
            encoder,
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_layers=encoder_layers,
            ff_dim=encoder_ff_dim,
            dropout=dropout,
            conv_kernel_size=conv_kernel_size,
        )
        self.ctc_head = nn.Linear(embed_dim, vocab_size)
        self.decoder = build_decoder(
            decoder,
            vocab_size=vocab_size,
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_layers=decoder_layers,
            ff_dim=decoder_ff_dim,
            dropout=dropout,
            alignment_layer=alignment_layer,
        )

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


def build_model(config: ASRModelConfig, *, vocab_size: int) -> ASRModel:
    """The :class:`ASRModel` that ``config`` describes, for ``vocab_size`` output tokens."""
    features, encoder, decoder = config.features, config.encoder, config.decoder
    return ASRModel(
        vocab_size=vocab_size,
        num_mels=features.num_mels,
        embed_dim=config.embed_dim,
        num_heads=config.num_heads,
        encoder=encoder.name,
        encoder_layers=encoder.num_layers,
        encoder_ff_dim=encoder.ff_dim,
        conv_kernel_size=encoder.conv_kernel_size,
        decoder=decoder.name,
        decoder_layers=decoder.num_layers,
        decoder_ff_dim=decoder.ff_dim,
        subsampling_channels=encoder.subsampling_channels,
        dropout=config.dropout,
        normalization=features.normalization,
        spec_augment=features.spec_augment,
        freq_mask_param=features.freq_mask_param,
        num_freq_masks=features.num_freq_masks,
        time_mask_ratio=features.time_mask_ratio,
        num_time_masks=features.num_time_masks,
        speed_perturb=features.speed_perturb,
        alignment_layer=decoder.alignment_layer,
    )
