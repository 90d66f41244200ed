"""The captioning model: an image encoder, a grid-attending decoder, and free-running decoding.

Show, Attend and Tell (Xu et al. 2015): an encoder turns the image into a grid of annotation
vectors; a decoder emits one word at a time, attending over the grid at every word. Decoding
uses the core's batched :func:`~multiattn.decoding.beam_search` (or
:func:`~multiattn.decoding.greedy_search`) and returns, with every caption, the attention map of
each of its words — never teacher-forced outputs.

Shape legend: ``B`` batch, ``S`` image side, ``C`` channels, ``H, W`` grid, ``T`` target steps,
``V`` vocabulary, ``K`` beam size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multiattn.attention.compiled_energy import CompiledEnergy
from multiattn.attention.spatial import attention_entropy as _attention_entropy
from multiattn.attention.spatial import doubly_stochastic_penalty
from multiattn.builders import fields, pick
from multiattn.decoding import Hypothesis, StepOutput, beam_search, greedy_search
from multiattn.tasks.captioning.decoders import ShowAttendTellDecoder, TransformerCaptionDecoder
from multiattn.tasks.captioning.encoders import ConvEncoder, TimmEncoder, WithCoordinates

__all__ = [
    "CaptionModelConfig",
    "EncoderConfig",
    "DecoderConfig",
    "ENCODERS",
    "DECODERS",
    "CaptionModel",
    "CaptionOutput",
    "Caption",
    "build_model",
]


@dataclass
class CaptionOutput:
    """Teacher-forced outputs: ``logits (B, T, V)``, ``attention (B, T, H, W)`` or ``None``, and
    the encoder's grid ``features (B, C, H, W)`` the attention is over."""

    logits: Tensor
    attention: Tensor | None
    features: Tensor | None = None


@dataclass
class Caption:
    """One decoded caption: token ids (no ``<bos>`` / ``<eos>``), score, per-word maps ``(T, H, W)``."""

    tokens: list[int]
    score: float
    attention: Tensor | None
    finished: bool


class CaptionModel(nn.Module):
    """Encoder + decoder.

    Args:
        encoder: ``(B, 3, S, S) -> (B, C, H, W)`` with an ``out_channels`` attribute.
        decoder: a :class:`ShowAttendTellDecoder` or :class:`TransformerCaptionDecoder`.
        pad_id: padding token id (ignored by the loss).
        bos_id: start token id.
        eos_id: end token id.
    """

    def __init__(
        self, *, encoder: nn.Module, decoder: nn.Module, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.compiled_energy = CompiledEnergy()  # the attention score kernel of compile_attention

    def forward(
        self, images: Tensor, tokens: Tensor, lengths: Tensor, *, with_attention: bool = True
    ) -> CaptionOutput:
        """Teacher forcing: predict ``tokens[:, 1:]`` from ``tokens[:, :-1]``.

        Args:
            images: ``(B, 3, S, S)``.
            tokens: ``(B, T + 1)`` ``<bos> w1 .. wn <eos>`` padded.
            lengths: ``(B,)`` valid tokens per row (``<bos>`` and ``<eos>`` included).
        """
        features = self.encoder(images)  # (B, C, H, W)
        inputs = tokens[:, :-1]  # (B, T)
        if isinstance(self.decoder, TransformerCaptionDecoder):
            logits, attention = self.decoder(features, inputs, lengths - 1, with_attention=with_attention)
        else:
            logits, attention = self.decoder(features, inputs, lengths - 1)
        return CaptionOutput(logits, attention, features)

    def loss(
        self,
        output: CaptionOutput,
        tokens: Tensor,
        lengths: Tensor,
        *,
        attention_penalty: float = 0.0,
        attention_entropy: float = 0.0,
        entropy_token_ids: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy over the valid targets (padding ignored) plus ``lambda`` times the doubly
        stochastic penalty plus ``attention_entropy`` times the attention's mean entropy (over the
        steps whose target is one of ``entropy_token_ids`` when given, else over every word).

        Returns:
            ``(loss, parts)`` with ``parts["nll"]`` (mean per target word), ``parts["penalty"]``
            and ``parts["entropy"]`` (when their weights are positive).
        """
        targets = tokens[:, 1:]  # (B, T)
        nll = self.token_nll(output.logits, tokens)
        parts = {"nll": nll}
        loss = nll
        if attention_penalty > 0 and output.attention is not None:
            penalty = doubly_stochastic_penalty(output.attention, lengths - 1)
            parts["penalty"] = penalty
            loss = loss + attention_penalty * penalty
        if attention_entropy > 0 and output.attention is not None:
            steps = None if entropy_token_ids is None else torch.isin(targets, entropy_token_ids)
            entropy = _attention_entropy(output.attention, lengths - 1, steps)
            parts["entropy"] = entropy
            loss = loss + attention_entropy * entropy
        return loss, parts

    def token_nll(self, logits: Tensor, tokens: Tensor) -> Tensor:
        """Mean cross-entropy of ``logits (B, T, V)`` (step t predicts ``tokens[:, t + 1]``) over
        the targets that are not padding; float32."""
        logits = logits.float()
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=self.pad_id
        )

    def _step(self, tokens: Tensor, state: dict) -> StepOutput:
        log_probs, state, attention = self.decoder.step(tokens, state)
        # <pad> and <bos> are never words: forbidding them keeps one attention map per word.
        log_probs = log_probs.index_fill(
            1, torch.tensor([self.pad_id, self.bos_id], device=log_probs.device), float("-inf")
        )
        return StepOutput(log_probs, state, attention)

    @torch.no_grad()
    def generate(self, images: Tensor, **search: Any) -> list[Caption]:
        """Free-running decoding of ``images (B, 3, S, S)``: the encoder, then :meth:`decode` with
        the ``search`` keyword arguments (``beam_size``, ...).

        Returns:
            One :class:`Caption` per image with ``attention (len(tokens), H, W)``.
        """
        return self.decode(self.encoder(images), **search)  # (B, C, H, W) features

    @torch.no_grad()
    def decode(
        self,
        features: Tensor,
        *,
        beam_size: int = 3,
        max_len: int = 30,
        length_penalty: float = 1.0,
        length_norm: str = "gnmt",
        compile_attention: bool = False,
    ) -> list[Caption]:
        """Free-running decoding of encoder ``features (B, C, H, W)``; ``beam_size == 1`` is greedy search.

        ``compile_attention`` scores the soft attention with one compiled kernel
        (:attr:`compiled_energy`, :mod:`multiattn.attention.compiled_energy`): faster for many
        images at once, after a one-off compilation.

        Returns:
            One :class:`Caption` per image with ``attention (len(tokens), H, W)``.
        """
        state = self.decoder.init_state(features)
        batch = features.shape[0]
        common = dict(batch_size=batch, bos_id=self.bos_id, eos_id=self.eos_id, max_len=max_len)
        with self.compiled_energy.active(compile_attention):
            if beam_size == 1:
                hyps: Sequence[Hypothesis] = greedy_search(self._step, state, **common)
            else:
                hyps = beam_search(
                    self._step,
                    state,
                    beam_size=beam_size,
                    length_penalty=length_penalty,
                    length_norm=length_norm,
                    **common,
                )
        captions = []
        for hyp in hyps:
            attention = None if hyp.attention is None else hyp.attention[: len(hyp.tokens)].float().cpu()
            captions.append(Caption(list(hyp.tokens), float(hyp.score), attention, bool(hyp.finished)))
        return captions


@dataclass(frozen=True)
class EncoderConfig:
    """The image encoder: image -> grid of annotation vectors.

    Attributes:
        name: cnn (a small CNN trained from scratch) or timm (a timm backbone's last feature map).
        channels: cnn: channels per stage.
        strides: cnn: stride per stage (their product is the grid's stride).
        kernel_sizes: cnn: kernel side per stage (odd at stride 1; even at stride 2 centres each
            cell on the pixels it stands for); None = 3 everywhere.
        dilations: cnn: kernel dilation per stage; None = 1 everywhere.
        backbone: timm: backbone name, e.g. resnet18.
        pretrained: timm: load pretrained weights (downloads when online).
        weights_file: timm: local backbone weights file (implies pretrained).
        fine_tune: timm: train the backbone too (else frozen).
        coordinates: append each grid cell's x and y (in [-1, 1]) to its annotation vector.
    """

    name: Literal["cnn", "timm"] = "cnn"
    channels: tuple[int, ...] = (32, 64, 96, 128, 128)
    strides: tuple[int, ...] = (2, 2, 2, 1, 1)
    kernel_sizes: tuple[int, ...] | None = None
    dilations: tuple[int, ...] | None = None
    backbone: str | None = None
    pretrained: bool = False
    weights_file: str | None = None
    fine_tune: bool = False
    coordinates: bool = False


@dataclass(frozen=True)
class DecoderConfig:
    """The word decoder attending over the grid.

    Attributes:
        name: show_attend_tell (LSTM with soft attention) or transformer (the core's token decoder).
        embed_dim: word embedding size (transformer: model dim D).
        hidden_dim: show_attend_tell: LSTM hidden size.
        attn_dim: show_attend_tell: soft attention MLP size.
        gate: show_attend_tell: the gating scalar beta of soft attention.
        num_heads: transformer: attention heads.
        num_layers: transformer: decoder layers.
        ff_dim: transformer: feed-forward size.
        dropout: dropout.
        init: show_attend_tell: the LSTM's initial state, mean (a projection of the mean
            annotation, Xu et al. eq. 5) or learned (the same for every image, so that all the
            decoder knows of the image comes through attention).
        attend: show_attend_tell: before (the paper's: the query is the state before the word
            is read) or after (the LSTM reads the previous word first and its new state queries
            the grid; docs/captioning.md "Attending after the LSTM step").
        query_word: show_attend_tell: add the previous word's embedding to the attention query.
    """

    name: Literal["show_attend_tell", "transformer"] = "show_attend_tell"
    embed_dim: int = 128
    hidden_dim: int = 256
    attn_dim: int = 128
    gate: bool = True
    num_heads: int = 4
    num_layers: int = 3
    ff_dim: int = 512
    dropout: float = 0.3
    init: Literal["mean", "learned"] = "mean"
    attend: Literal["before", "after"] = "before"
    query_word: bool = False


@dataclass(frozen=True)
class CaptionModelConfig:
    """The captioning network.

    Attributes:
        encoder: the image encoder.
        decoder: the word decoder.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


def _cnn(config: EncoderConfig) -> ConvEncoder:
    return ConvEncoder(
        channels=config.channels,
        strides=config.strides,
        kernel_sizes=config.kernel_sizes,
        dilations=config.dilations,
    )


def _timm(config: EncoderConfig) -> TimmEncoder:
    if not config.backbone:
        raise ValueError("encoder 'timm' needs a backbone name (encoder.backbone)")
    return TimmEncoder(
        name=config.backbone,
        pretrained=config.pretrained,
        weights_file=config.weights_file,
        fine_tune=config.fine_tune,
    )


ENCODERS: dict[str, Callable[[EncoderConfig], ConvEncoder | TimmEncoder]] = {"cnn": _cnn, "timm": _timm}
"""Encoder name -> builder of the encoder from its config."""


def _show_attend_tell(config: DecoderConfig, *, vocab_size: int, feature_dim: int, max_len: int) -> nn.Module:
    options = fields(
        config, "embed_dim", "hidden_dim", "attn_dim", "dropout", "gate", "init", "attend", "query_word"
    )
    return ShowAttendTellDecoder(vocab_size=vocab_size, feature_dim=feature_dim, **options)


def _transformer(config: DecoderConfig, *, vocab_size: int, feature_dim: int, max_len: int) -> nn.Module:
    options = fields(config, "embed_dim", "num_heads", "num_layers", "ff_dim", "dropout")
    return TransformerCaptionDecoder(
        vocab_size=vocab_size, feature_dim=feature_dim, max_len=max_len, **options
    )


DECODERS: dict[str, Callable[..., nn.Module]] = {
    "show_attend_tell": _show_attend_tell,
    "transformer": _transformer,
}
"""Decoder name -> builder of the decoder from its config, the vocabulary size, the grid's channels
and the longest caption."""


def build_model(config: CaptionModelConfig, *, vocab_size: int, max_len: int = 64) -> CaptionModel:
    """The :class:`CaptionModel` that ``config`` describes, for ``vocab_size`` words and captions up to ``max_len``."""
    encoder = pick(ENCODERS, config.encoder.name, what="encoder")(config.encoder)
    if config.encoder.coordinates:
        encoder = WithCoordinates(encoder)
    decoder = pick(DECODERS, config.decoder.name, what="decoder")(
        config.decoder, vocab_size=vocab_size, feature_dim=encoder.out_channels, max_len=max_len
    )
    return CaptionModel(encoder=encoder, decoder=decoder)
