"""LightningModule of the hybrid CTC/attention recogniser: loss, decoding, metrics, overlays.

Training loss (Kim, Hori and Watanabe 2017; Watanabe et al. 2017)::

    L = lambda * L_ctc + (1 - lambda) * L_att        lambda = ctc_weight = 0.3

``L_ctc`` is ``F.ctc_loss`` summed over an utterance, ``L_att`` the (label-smoothed) cross-entropy
summed over its tokens (characters or pieces) plus eos, both averaged over utterances; padding
never counts.

With ``language_model.hidden_dim > 0`` an LSTM language model over the same tokens
(:class:`multiattn.language_model.LSTMLanguageModel`) learns from the same transcripts in the same
steps: its mean per-token cross-entropy ``L_lm`` is added to the loss (``train/loss = L + L_lm``;
its parameters are disjoint from the recogniser's, so it changes none of their gradients, and the
two parts' gradients are clipped separately). Attention and joint decoding add
``decoding.lm_weight * log p_lm`` to the decoder's scores (shallow fusion,
:func:`multiattn.decoding.shallow_fusion`).

Validation decodes free-running (CTC greedy by default, fast) and reports corpus WER / CER
(``val/wer`` is the checkpoint monitor). Test decodes with ``test_decoding`` (joint CTC/attention
beam search by default) and, when the data has true word times (the embedded corpus), the
word-start error of the attention and of the CTC forced alignment. A fixed handful of validation
utterances is drawn as overlays each epoch (:mod:`multiattn.tasks.asr.overlay`).

Shape legend: ``B`` batch, ``N`` samples, ``S`` encoder frames, ``T`` target tokens, ``V`` vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from multiattn.configs import from_plain
from multiattn.io import UserError
from multiattn.language_model import LSTMLanguageModel
from multiattn.metrics.speech import boundary_errors, error_counts, match_words
from multiattn.schedules import warmup_cosine
from multiattn.tasks.asr.alignment import attention_word_starts, ctc_token_spans, ctc_word_spans, spans_matrix
from multiattn.tasks.asr.decode import DECODING_MODES, DecodeResult, decode_batch
from multiattn.tasks.asr.model import ASRModelConfig, build_model
from multiattn.tasks.asr.tokenizer import SentencePieceTokenizer, build_tokenizer
from multiattn.tasks.common.configured import ConfiguredSystem
from multiattn.tasks.common.distributed import gather_records

__all__ = [
    "ASRSystem",
    "TokenizerConfig",
    "LanguageModelConfig",
    "ASRLossConfig",
    "ASROptimConfig",
    "ASRDecodingConfig",
]


@dataclass(frozen=True)
class TokenizerConfig:
    """The output tokens (:mod:`multiattn.tasks.asr.tokenizer`).

    Attributes:
        name: char (characters) or sentencepiece (BPE / unigram pieces, needs the sentencepiece package).
        vocab: char: the vocabulary (specials first); null = the default characters. Stored in the
            checkpoint, so the checkpoint rebuilds its own tokenizer.
        vocab_size: sentencepiece: the output size V (an upper bound on the pieces).
        model_type: sentencepiece: bpe or unigram.
        sentencepiece_model: sentencepiece: the trained model (base64). Leave unset: it is trained on
            the data module's training transcripts when fit starts and stored in the checkpoint.
    """

    name: Literal["char", "sentencepiece"] = "char"
    vocab: list[str] | None = None
    vocab_size: int = 256
    model_type: Literal["bpe", "unigram"] = "bpe"
    sentencepiece_model: str | None = None


@dataclass(frozen=True)
class LanguageModelConfig:
    """An LSTM language model trained beside the recogniser on the same transcripts.

    Attributes:
        hidden_dim: its hidden size; 0 (as in checkpoints written before the option) trains none.
        embed_dim: its token embedding size.
        num_layers: its depth.
        dropout: its dropout.
        text_batch_size: sentences of the data module's wider training text
            (``ASRDataModule.train_text()``: the open corpus's ``train_text.txt``, sentences with
            and without audio) added to each training step's batch for the language model only,
            drawn at random per step (seeded by the step); 0 = the transcripts alone.
    """

    hidden_dim: int = 0
    embed_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.3
    text_batch_size: int = 0


@dataclass(frozen=True)
class ASRLossConfig:
    """The training loss ``ctc_weight * L_ctc + (1 - ctc_weight) * L_att``.

    Attributes:
        ctc_weight: lambda, the CTC share of the loss (in [0, 1]).
        label_smoothing: of the attention cross-entropy.
    """

    ctc_weight: float = 0.3
    label_smoothing: float = 0.1


@dataclass(frozen=True)
class ASROptimConfig:
    """AdamW (no weight decay on norms and biases) and its warm-up + cosine schedule.

    Attributes:
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps (at most a tenth of the run), then cosine decay.
        lr_floor: the rate the cosine decay ends at, as a fraction of the peak rate.
    """

    learning_rate: float = 1e-3
    weight_decay: float = 1e-3
    warmup_steps: int = 500
    lr_floor: float = 0.02


@dataclass(frozen=True)
class ASRDecodingConfig:
    """Free-running decoding of validation, test and the transcribe command.

    Attributes:
        val_decoding: ctc (fast), attention or joint during validation.
        test_decoding: decoding mode of test (and the default of transcribe).
        beam_size: beam of the attention / joint searches.
        ctc_weight: CTC weight of joint decoding.
        lm_weight: shallow-fusion weight of the language model in attention and joint decoding
            (0 = not used; ignored without a language model).
        length_penalty: beam-search length-normalisation exponent.
        alignment_method: argmax or centroid of the first token's attention row (word starts).
    """

    val_decoding: Literal["ctc", "attention", "joint"] = "ctc"
    test_decoding: Literal["ctc", "attention", "joint"] = "joint"
    beam_size: int = 10
    ctc_weight: float = 0.5
    lm_weight: float = 0.0
    length_penalty: float = 1.0
    alignment_method: Literal["argmax", "centroid"] = "argmax"


# The flat hyper-parameters of checkpoints written before the nested configs, and their places now.
FLAT_LAYOUT = {
    "tokenizer": "tokenizer.name",
    **{key: f"tokenizer.{key}" for key in ("vocab", "vocab_size", "model_type", "sentencepiece_model")},
    **{key: f"model.{key}" for key in ("embed_dim", "num_heads", "dropout")},
    "encoder": "model.encoder.name",
    "encoder_layers": "model.encoder.num_layers",
    "encoder_ff_dim": "model.encoder.ff_dim",
    "conv_kernel_size": "model.encoder.conv_kernel_size",
    "subsampling_channels": "model.encoder.subsampling_channels",
    "decoder": "model.decoder.name",
    "decoder_layers": "model.decoder.num_layers",
    "decoder_ff_dim": "model.decoder.ff_dim",
    "alignment_layer": "model.decoder.alignment_layer",
    **{
        key: f"model.features.{key}"
        for key in (
            "num_mels",
            "normalization",
            "spec_augment",
            "freq_mask_param",
            "num_freq_masks",
            "time_mask_ratio",
            "num_time_masks",
            "speed_perturb",
        )
    },
    **{key: f"loss.{key}" for key in ("ctc_weight", "label_smoothing")},
    **{key: f"optim.{key}" for key in ("learning_rate", "weight_decay", "warmup_steps", "lr_floor")},
    **{key: f"decoding.{key}" for key in ("val_decoding", "test_decoding", "beam_size", "length_penalty")},
    "alignment_method": "decoding.alignment_method",
    "decode_ctc_weight": "decoding.ctc_weight",
    "decode_lm_weight": "decoding.lm_weight",
    "lm_hidden_dim": "language_model.hidden_dim",
    "lm_embed_dim": "language_model.embed_dim",
    "lm_layers": "language_model.num_layers",
    "lm_dropout": "language_model.dropout",
    "num_overlays": "overlay_count",
}


class ASRSystem(ConfiguredSystem, LightningModule):
    """Joint CTC/attention speech recognition.

    Configs (:class:`~multiattn.tasks.common.configured.ConfiguredSystem`): the typed ones are
    :attr:`model_config`,
    :attr:`tokenizer_config`, :attr:`lm_config`, :attr:`loss`, :attr:`optim` and :attr:`decoding`.

    Args:
        model: the recogniser (:func:`multiattn.tasks.asr.model.build_model`).
        tokenizer: the output tokens.
        language_model: the language model trained beside the recogniser (none by default).
        loss: the training loss.
        optim: optimiser and schedule.
        decoding: free-running decoding.
        log_overlays: draw overlays of ``overlay_count`` validation utterances each epoch.
        overlay_count: how many.
    """

    FLAT_LAYOUT = FLAT_LAYOUT

    def __init__(
        self,
        *,
        # frozen dataclasses: one shared default instance is safe
        model: ASRModelConfig = ASRModelConfig(),  # noqa: B008
        tokenizer: TokenizerConfig = TokenizerConfig(),
        language_model: LanguageModelConfig = LanguageModelConfig(),
        loss: ASRLossConfig = ASRLossConfig(),
        optim: ASROptimConfig = ASROptimConfig(),
        decoding: ASRDecodingConfig = ASRDecodingConfig(),
        log_overlays: bool = True,
        overlay_count: int = 2,
    ) -> None:
        super().__init__()
        self.model_config = from_plain(ASRModelConfig, model, name="model")
        tokens = from_plain(TokenizerConfig, tokenizer, name="tokenizer")
        self.lm_config = from_plain(LanguageModelConfig, language_model, name="language_model")
        self.loss = from_plain(ASRLossConfig, loss, name="loss")
        self.optim = from_plain(ASROptimConfig, optim, name="optim")
        self.decoding = from_plain(ASRDecodingConfig, decoding, name="decoding")
        for name in ("val_decoding", "test_decoding"):
            mode = getattr(self.decoding, name)
            if mode not in DECODING_MODES:
                raise ValueError(
                    f"decoding.{name}: expected one of {list(DECODING_MODES)}, received {mode!r}"
                )
        if not 0.0 <= self.loss.ctc_weight <= 1.0:
            raise ValueError(f"loss.ctc_weight: expected a value in [0, 1], received {self.loss.ctc_weight}")
        if min(self.lm_config.hidden_dim, self.lm_config.text_batch_size, self.decoding.lm_weight) < 0:
            raise ValueError(
                "language_model.hidden_dim, language_model.text_batch_size and decoding.lm_weight must be "
                f">= 0, received {self.lm_config.hidden_dim}, {self.lm_config.text_batch_size}, "
                f"{self.decoding.lm_weight}"
            )
        self.tokenizer = build_tokenizer(
            tokens.name,
            vocab=tokens.vocab,
            vocab_size=tokens.vocab_size,
            model_type=tokens.model_type,
            model=tokens.sentencepiece_model,
        )
        if tokens.vocab is None and tokens.name == "char":
            tokens = replace(tokens, vocab=list(self.tokenizer.vocab))
        self.tokenizer_config = tokens
        self.save_hyperparameters()
        self.store_configs(
            model=self.model_config,
            tokenizer=self.tokenizer_config,
            language_model=self.lm_config,
            loss=self.loss,
            optim=self.optim,
            decoding=self.decoding,
        )
        self.model = build_model(self.model_config, vocab_size=len(self.tokenizer))
        lm = self.lm_config
        self.language_model = (
            LSTMLanguageModel(
                vocab_size=len(self.tokenizer),
                embed_dim=lm.embed_dim,
                hidden_dim=lm.hidden_dim,
                num_layers=lm.num_layers,
                dropout=lm.dropout,
                pad_id=self.tokenizer.pad_id,
            )
            if lm.hidden_dim > 0
            else None
        )
        self._outputs: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ tokenizer
    def setup(self, stage: str) -> None:
        """Train a sentencepiece tokenizer on the training transcripts when ``fit`` starts.

        Lightning sets the data module up first, so its training split is known. Only ``fit``
        trains: other stages get the model from the checkpoint (``on_load_checkpoint``), and a
        resumed ``fit`` replaces this (identical, deterministic) model with the stored one.
        """
        if stage == "fit" and self.language_model is not None and self.lm_config.text_batch_size > 0:
            train_text = getattr(self.trainer.datamodule, "train_text", None)
            if train_text is None:
                raise UserError(
                    "language_model.text_batch_size: training needs a data module with train_text() "
                    "(multiattn.tasks.asr.data.ASRDataModule)"
                )
            self._lm_text = train_text()
        tok = self.tokenizer
        if stage != "fit" or not isinstance(tok, SentencePieceTokenizer) or tok.trained:
            return
        train_texts = getattr(self.trainer.datamodule, "train_texts", None)
        if train_texts is None:
            raise UserError(
                "tokenizer sentencepiece: training needs a data module with train_texts() "
                "(multiattn.tasks.asr.data.ASRDataModule) to learn the pieces from"
            )
        tok.train(train_texts())
        self.tokenizer_config = replace(self.tokenizer_config, sentencepiece_model=tok.model)
        self.hparams["tokenizer"]["sentencepiece_model"] = tok.model  # saved with the hyper-parameters

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's sentencepiece model (the module may have been built from a config).

        Checkpoints written before the decoders shared the core's token decoder name the token
        embedding ``decoder.embed``; it is ``decoder.embedding`` now.
        """
        weights = checkpoint.get("state_dict") or {}
        for key in [key for key in weights if key.startswith("model.decoder.embed.")]:
            weights["model.decoder.embedding." + key.removeprefix("model.decoder.embed.")] = weights.pop(key)
        stored_hparams = self.upgrade_hyperparameters(dict(checkpoint.get("hyper_parameters") or {}))
        stored = (stored_hparams.get("tokenizer") or {}).get("sentencepiece_model")
        tok = self.tokenizer
        if isinstance(tok, SentencePieceTokenizer) and stored and stored != tok.model:
            tok.load(stored)
            self.tokenizer_config = replace(self.tokenizer_config, sentencepiece_model=stored)
            self.hparams["tokenizer"]["sentencepiece_model"] = stored

    # ------------------------------------------------------------------ training
    def _teacher_forcing(self, texts: list[str]) -> tuple[torch.Tensor, ...]:
        """``(targets (B, T), target_lengths (B,), tokens_in (B, T + 1), tokens_out (B, T + 1))``:
        inputs start with bos, outputs end with eos and hold -100 past it."""
        tok = self.tokenizer
        targets, target_lengths = tok.batch_encode(texts)
        targets, target_lengths = targets.to(self.device), target_lengths.to(self.device)
        batch_size = targets.shape[0]
        bos = targets.new_full((batch_size, 1), tok.bos_id)
        tokens_in = torch.cat([bos, targets], dim=1)  # (B, T + 1)
        tokens_out = torch.cat([targets, targets.new_full((batch_size, 1), -100)], dim=1)  # (B, T + 1)
        tokens_out[torch.arange(batch_size, device=self.device), target_lengths] = tok.eos_id
        positions = torch.arange(tokens_out.shape[1], device=self.device)[None, :]  # (1, T + 1)
        tokens_out = tokens_out.masked_fill(positions > target_lengths[:, None], -100)
        return targets, target_lengths, tokens_in, tokens_out

    def _extra_lm_texts(self) -> list[str]:
        """This training step's sentences of the wider text (``language_model.text_batch_size``)."""
        texts = getattr(self, "_lm_text", None)
        if not self.training or not texts:
            return []
        generator = torch.Generator().manual_seed(1_000_003 + int(self.global_step))
        picks = torch.randint(len(texts), (self.lm_config.text_batch_size,), generator=generator)
        return [texts[i] for i in picks.tolist()]

    def compute_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """``{"loss", "ctc", "attention", "token_accuracy"}`` (and ``"lm"``) for a :class:`multiattn.tasks.asr.data.SpeechBatch`."""
        tok = self.tokenizer
        targets, target_lengths, tokens_in, tokens_out = self._teacher_forcing(batch.texts)
        batch_size = targets.shape[0]
        out = self.model(batch.waveform, batch.lengths, tokens_in, target_lengths + 1)
        ctc = (
            F.ctc_loss(
                out.ctc_log_probs.transpose(0, 1),  # (S, B, V)
                targets,
                out.encoder_lengths,
                target_lengths,
                blank=tok.blank_id,
                reduction="sum",
                zero_infinity=True,
            )
            / batch_size
        )
        logits = out.decoder_logits.float()  # (B, T + 1, V)
        attention = (
            F.cross_entropy(
                logits.flatten(0, 1),
                tokens_out.flatten(),
                ignore_index=-100,
                label_smoothing=self.loss.label_smoothing,
                reduction="sum",
            )
            / batch_size
        )
        lam = self.loss.ctc_weight
        valid = tokens_out != -100
        accuracy = ((logits.argmax(-1) == tokens_out) & valid).sum() / valid.sum().clamp(min=1)
        losses = {
            "loss": lam * ctc + (1 - lam) * attention,
            "ctc": ctc,
            "attention": attention,
            "token_accuracy": accuracy,
        }
        if self.language_model is not None:
            extra = self._extra_lm_texts()
            if extra:  # the transcripts and the wider text's sentences, one padded batch
                _, _, tokens_in, tokens_out = self._teacher_forcing([*batch.texts, *extra])
            losses["lm"] = self.language_model.loss(tokens_in, tokens_out)
            losses["loss"] = losses["loss"] + losses["lm"]
        return losses

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses = self.compute_loss(batch)
        self.log_dict(
            {f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch.texts)
        )
        return losses["loss"]

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the recogniser's and the language model's gradients each on its own.

        One global norm over both would let the language model's gradients change how much the
        recogniser's are clipped (and so its training); clipped apart, adding the language
        model leaves the recogniser's updates as they were.
        """
        if not gradient_clip_val:
            return
        for module in (self.model, self.language_model):
            if module is None:
                continue
            parameters = [p for p in module.parameters() if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)

    def configure_optimizers(self) -> Any:
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            (no_decay if param.dim() < 2 or "norm" in name else decay).append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.optim.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.optim.learning_rate,
            betas=(0.9, 0.98),
        )
        scheduler = warmup_cosine(
            optimizer,
            total_steps=int(self.trainer.estimated_stepping_batches) if self.trainer else 10_000,
            warmup_steps=self.optim.warmup_steps,
            floor=self.optim.lr_floor,
            max_warmup_fraction=0.1,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor,
        *,
        mode: str | None = None,
        beam_size: int | None = None,
        ctc_weight: float | None = None,
        lm_weight: float | None = None,
        return_attention: bool = False,
    ) -> list[DecodeResult]:
        """Free-running decoding (defaults: :attr:`decoding`'s ``test_decoding``, ``beam_size``,
        ``ctc_weight``, ``lm_weight``; a language-model weight needs a model trained with one)."""
        hp = self.decoding
        lm_weight = self.resolve_lm_weight(lm_weight)
        return decode_batch(
            self.model,
            self.tokenizer,
            waveform,
            lengths,
            mode=hp.test_decoding if mode is None else mode,
            beam_size=hp.beam_size if beam_size is None else beam_size,
            ctc_weight=hp.ctc_weight if ctc_weight is None else ctc_weight,
            length_penalty=hp.length_penalty,
            language_model=self.language_model if lm_weight > 0 else None,
            lm_weight=lm_weight,
            return_attention=return_attention,
        )

    def resolve_lm_weight(self, lm_weight: float | None) -> float:
        """The language-model weight a decode uses: ``decoding.lm_weight`` by default (ignored, as
        documented, without a language model); an explicit weight above 0 needs a language model."""
        if lm_weight is None:
            return self.decoding.lm_weight if self.language_model is not None else 0.0
        if lm_weight > 0 and self.language_model is None:
            raise UserError(
                f"lm_weight {lm_weight}: this checkpoint has no language model (trained with language_model.hidden_dim 0)"
            )
        return lm_weight

    def alignment_errors(self, result: DecodeResult, words: list[dict[str, Any]]) -> dict[str, list[float]]:
        """Predicted vs true starts of the correctly recognised words, by attention and by CTC."""
        ranges = self.tokenizer.word_ranges(result.tokens)  # a word starts at its first token
        hyp_words = [word for word, _, _ in ranges]
        pairs = match_words([w["word"] for w in words], hyp_words)
        out: dict[str, list[float]] = {"true": [], "attention": [], "ctc": [], "true_ctc": []}
        if not pairs:
            return out
        if result.attention is not None:
            starts = attention_word_starts(result.attention, ranges, method=self.decoding.alignment_method)
            for ref_index, hyp_index in pairs:
                out["true"].append(float(words[ref_index]["start"]))
                out["attention"].append(starts[hyp_index])
        spans = ctc_word_spans(result.ctc_log_probs, result.tokens, ranges, blank_id=self.tokenizer.blank_id)
        if spans is not None:
            for ref_index, hyp_index in pairs:
                out["true_ctc"].append(float(words[ref_index]["start"]))
                out["ctc"].append(spans[hyp_index].start)
        return out

    def _evaluate(self, stage: str, batch: Any, mode: str, *, alignment: bool) -> None:
        losses = self.compute_loss(batch)
        self.log_dict(
            {f"{stage}/{k}": v for k, v in losses.items()}, batch_size=len(batch.texts), sync_dist=True
        )
        results = self.decode(
            batch.waveform, batch.lengths, mode=mode, return_attention=alignment and mode != "ctc"
        )
        store = self._outputs.setdefault(stage, [])
        for index, result in enumerate(results):
            record: dict[str, Any] = {"id": batch.paths[index], "ref": batch.texts[index], "hyp": result.text}
            words = batch.words[index] if batch.words is not None else None
            if alignment and words:
                record["align"] = self.alignment_errors(result, words)
            store.append(record)

    def _epoch_end(self, stage: str) -> None:
        # Corpus WER / CER over every process's utterances (one process: this one's), each once.
        records = gather_records(self._outputs.pop(stage, []), key=lambda record: record["id"])
        if not records:
            return
        refs, hyps = [r["ref"] for r in records], [r["hyp"] for r in records]
        words, chars = error_counts(refs, hyps, unit="word"), error_counts(refs, hyps, unit="char")
        metrics = {
            f"{stage}/wer": words["errors"] / max(words["reference_units"], 1),
            f"{stage}/cer": chars["errors"] / max(chars["reference_units"], 1),
        }
        aligned = [r["align"] for r in records if "align" in r]
        if aligned:
            for source, truth in (("attention", "true"), ("ctc", "true_ctc")):
                predicted = [t for a in aligned for t in a[source]]
                true = [t for a in aligned for t in a[truth]]
                if predicted:
                    stats = boundary_errors(predicted, true)
                    metrics[f"{stage}/{source}_start_median_ms"] = stats["median_abs_error_ms"]
                    metrics[f"{stage}/{source}_start_within_50ms"] = stats["within_50ms"]
                    metrics[f"{stage}/{source}_start_within_100ms"] = stats["within_100ms"]
        self.log_dict(metrics, prog_bar=stage == "val", sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate("val", batch, self.decoding.val_decoding, alignment=False)
        if (
            batch_idx == 0
            and self.hparams.log_overlays
            and self.trainer is not None
            and not self.trainer.sanity_checking
        ):
            self._log_overlays(batch)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate("test", batch, self.decoding.test_decoding, alignment=True)

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, str]]:
        """``multiattn predict``: ``[{"file", "text"}]`` per batch, decoded with ``test_decoding``."""
        results = self.decode(batch.waveform, batch.lengths)
        return [{"file": path, "text": result.text} for path, result in zip(batch.paths, results)]

    # ------------------------------------------------------------------ overlays
    def overlay_figure(
        self, result: DecodeResult, *, true_starts: list[float] | None = None, title: str | None = None
    ):
        """The overlay figure of one decoded utterance (needs ``return_attention=True`` results)."""
        from multiattn.tasks.asr.overlay import speech_overlay

        labels = self.tokenizer.token_labels(result.tokens)  # one row per token: a character or a piece
        ranges = self.tokenizer.word_ranges(result.tokens)
        spans = ctc_token_spans(result.ctc_log_probs, result.tokens, blank_id=self.tokenizer.blank_id)
        ctc_matrix = None if not spans else spans_matrix(spans, result.ctc_log_probs.shape[0])
        words = (
            ctc_word_spans(result.ctc_log_probs, result.tokens, ranges, blank_id=self.tokenizer.blank_id)
            or []
        )
        attention = result.attention if result.attention is not None and result.attention.shape[0] else None
        return speech_overlay(
            features=result.features,
            text=labels,
            attention=attention,
            ctc_alignment=ctc_matrix,
            words=words,
            true_starts=true_starts,
            title=title,
        )

    def _log_overlays(self, batch: Any) -> None:
        from multiattn.tasks.common.overlay_logging import log_overlay

        count = min(self.hparams.overlay_count, len(batch.texts))
        if count == 0:
            return
        results = self.decode(
            batch.waveform[:count],
            batch.lengths[:count],
            mode="attention",
            beam_size=1,
            return_attention=True,
        )
        for index, result in enumerate(results):
            words = batch.words[index] if batch.words is not None else None
            true_starts = [float(w["start"]) for w in words] if words else None
            fig = self.overlay_figure(result, true_starts=true_starts, title=f"ref: {batch.texts[index]}")
            log_overlay(self.trainer, f"val_overlay/{index}", fig)
