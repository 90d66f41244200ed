"""LightningModule of the hybrid CTC/attention recogniser: loss, decoding, metrics, overlays.

Training loss (Kim, Hori and Watanabe 2017; Watanabe et al. 2017)::

    L = lambda * L_ctc + (1 - lambda) * L_att        lambda = ctc_weight = 0.3

``L_ctc`` is ``F.ctc_loss`` summed over an utterance, ``L_att`` the (label-smoothed) cross-entropy
summed over its tokens (characters or pieces) plus eos, both averaged over utterances; padding
never counts.

With ``lm_hidden_dim > 0`` an LSTM language model over the same tokens
(:class:`multiattn.language_model.LSTMLanguageModel`) learns from the same transcripts in the same
steps: its mean per-token cross-entropy ``L_lm`` is added to the loss (``train/loss = L + L_lm``;
its parameters are disjoint from the recogniser's, so it changes none of their gradients, and the
two parts' gradients are clipped separately). Attention and joint decoding add
``decode_lm_weight * log p_lm`` to the decoder's scores (shallow fusion,
:func:`multiattn.decoding.shallow_fusion`).

Validation decodes free-running (CTC greedy by default, fast) and reports corpus WER / CER
(``val/wer`` is the checkpoint monitor). Test decodes with ``test_decoding`` (joint CTC/attention
beam search by default) and, when the data has true word times (the embedded corpus), the
word-start error of the attention and of the CTC forced alignment. A fixed handful of validation
utterances is drawn as overlays each epoch (:mod:`multiattn.tasks.asr.overlay`).

Shape legend: ``B`` batch, ``N`` samples, ``S`` encoder frames, ``T`` target tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from multiattn.io import UserError
from multiattn.language_model import LSTMLanguageModel
from multiattn.metrics.speech import boundary_errors, error_counts, match_words
from multiattn.tasks.asr.alignment import attention_word_starts, ctc_token_spans, ctc_word_spans, spans_matrix
from multiattn.tasks.asr.decode import DECODING_MODES, DecodeResult, decode_batch
from multiattn.tasks.asr.model import ASRModel
from multiattn.tasks.asr.tokenizer import SentencePieceTokenizer, build_tokenizer
from multiattn.tasks.common.distributed import gather_records

__all__ = ["ASRSystem"]


class ASRSystem(LightningModule):
    """Joint CTC/attention speech recognition.

    Args:
        tokenizer: ``"char"`` (default) or ``"sentencepiece"`` (BPE / unigram pieces, needs the
            ``sentencepiece`` package), see :mod:`multiattn.tasks.asr.tokenizer`.
        vocab: the character tokenizer's vocabulary (specials first); ``None`` = default
            characters. Stored in the checkpoint, so the checkpoint rebuilds its own tokenizer.
        vocab_size: sentencepiece only: the output size ``V`` (an upper bound on the pieces).
        model_type: sentencepiece only: ``"bpe"`` or ``"unigram"``.
        sentencepiece_model: sentencepiece only: the trained model (base64). Leave unset: it is
            trained on the data module's training transcripts when ``fit`` starts and stored in the
            checkpoint's hyper-parameters, so ``transcribe`` / ``test`` rebuild it without the data.
        embed_dim / num_heads / encoder / encoder_layers / encoder_ff_dim / conv_kernel_size /
            decoder / decoder_layers / decoder_ff_dim / subsampling_channels / dropout /
            normalization / spec_augment / freq_mask_param / num_freq_masks / time_mask_ratio /
            num_time_masks / speed_perturb / alignment_layer: see :class:`multiattn.tasks.asr.model.ASRModel`.
        ctc_weight: ``lambda`` of the training loss.
        label_smoothing: of the attention cross-entropy.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up, then cosine decay to 0 over the run.
        val_decoding: ``"ctc"`` (fast), ``"attention"`` or ``"joint"`` during validation.
        test_decoding: decoding mode of ``test``.
        beam_size: beam of the attention / joint searches.
        decode_ctc_weight: CTC weight of joint decoding.
        length_penalty: beam-search length-normalisation exponent.
        alignment_method: ``"argmax"`` or ``"centroid"`` of the first token's attention row.
        lm_hidden_dim: hidden size of the language model trained beside the recogniser; ``0``
            (the class default, as in checkpoints written before the option existed) trains none.
        lm_embed_dim / lm_layers / lm_dropout: its embedding size, depth and dropout.
        decode_lm_weight: shallow-fusion weight of the language model in attention and joint
            decoding (``0`` = not used; ignored without a language model).
        log_overlays: draw overlays of ``num_overlays`` validation utterances each epoch.
        num_overlays: how many.
    """

    def __init__(
        self,
        *,
        tokenizer: str = "char",
        vocab: list[str] | None = None,
        vocab_size: int = 256,
        model_type: str = "bpe",
        sentencepiece_model: str | None = None,
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
        ctc_weight: float = 0.3,
        label_smoothing: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-3,
        warmup_steps: int = 500,
        val_decoding: str = "ctc",
        test_decoding: str = "joint",
        beam_size: int = 10,
        decode_ctc_weight: float = 0.5,
        length_penalty: float = 1.0,
        alignment_method: str = "argmax",
        lm_hidden_dim: int = 0,
        lm_embed_dim: int = 256,
        lm_layers: int = 1,
        lm_dropout: float = 0.3,
        decode_lm_weight: float = 0.0,
        log_overlays: bool = True,
        num_overlays: int = 2,
    ) -> None:
        super().__init__()
        for name, mode in (("val_decoding", val_decoding), ("test_decoding", test_decoding)):
            if mode not in DECODING_MODES:
                raise ValueError(f"{name}: expected one of {list(DECODING_MODES)}, received {mode!r}")
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight: expected a value in [0, 1], received {ctc_weight}")
        if lm_hidden_dim < 0 or decode_lm_weight < 0:
            raise ValueError(
                f"lm_hidden_dim and decode_lm_weight must be >= 0, received {lm_hidden_dim}, {decode_lm_weight}"
            )
        self.tokenizer = build_tokenizer(
            tokenizer, vocab=vocab, vocab_size=vocab_size, model_type=model_type, model=sentencepiece_model
        )
        if vocab is None and tokenizer == "char":
            vocab = list(self.tokenizer.vocab)
        self.save_hyperparameters()
        self.model = ASRModel(
            vocab_size=len(self.tokenizer),
            embed_dim=embed_dim,
            num_heads=num_heads,
            encoder=encoder,
            encoder_layers=encoder_layers,
            encoder_ff_dim=encoder_ff_dim,
            conv_kernel_size=conv_kernel_size,
            decoder=decoder,
            decoder_layers=decoder_layers,
            decoder_ff_dim=decoder_ff_dim,
            subsampling_channels=subsampling_channels,
            dropout=dropout,
            normalization=normalization,
            spec_augment=spec_augment,
            freq_mask_param=freq_mask_param,
            num_freq_masks=num_freq_masks,
            time_mask_ratio=time_mask_ratio,
            num_time_masks=num_time_masks,
            speed_perturb=speed_perturb,
            alignment_layer=alignment_layer,
        )
        self.language_model = (
            LSTMLanguageModel(
                vocab_size=len(self.tokenizer),
                embed_dim=lm_embed_dim,
                hidden_dim=lm_hidden_dim,
                num_layers=lm_layers,
                dropout=lm_dropout,
                pad_id=self.tokenizer.pad_id,
            )
            if lm_hidden_dim > 0
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
        self.hparams.sentencepiece_model = tok.model  # saved with the hyper-parameters

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's sentencepiece model (the module may have been built from a config)."""
        stored = (checkpoint.get("hyper_parameters") or {}).get("sentencepiece_model")
        tok = self.tokenizer
        if isinstance(tok, SentencePieceTokenizer) and stored and stored != tok.model:
            tok.load(stored)
            self.hparams.sentencepiece_model = stored

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """``{"loss", "ctc", "attention", "token_accuracy"}`` (and ``"lm"``) for a :class:`multiattn.tasks.asr.data.SpeechBatch`."""
        tok = self.tokenizer
        targets, target_lengths = tok.batch_encode(batch.texts)
        targets, target_lengths = targets.to(self.device), target_lengths.to(self.device)
        batch_size = targets.shape[0]
        bos = targets.new_full((batch_size, 1), tok.bos_id)
        tokens_in = torch.cat([bos, targets], dim=1)  # (B, T + 1)
        tokens_out = torch.cat([targets, targets.new_full((batch_size, 1), -100)], dim=1)  # (B, T + 1)
        tokens_out[torch.arange(batch_size, device=self.device), target_lengths] = tok.eos_id
        positions = torch.arange(tokens_out.shape[1], device=self.device)[None, :]  # (1, T + 1)
        tokens_out = tokens_out.masked_fill(positions > target_lengths[:, None], -100)
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
                label_smoothing=self.hparams.label_smoothing,
                reduction="sum",
            )
            / batch_size
        )
        lam = self.hparams.ctc_weight
        valid = tokens_out != -100
        accuracy = ((logits.argmax(-1) == tokens_out) & valid).sum() / valid.sum().clamp(min=1)
        losses = {
            "loss": lam * ctc + (1 - lam) * attention,
            "ctc": ctc,
            "attention": attention,
            "token_accuracy": accuracy,
        }
        if self.language_model is not None:
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
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams.learning_rate,
            betas=(0.9, 0.98),
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1) if self.trainer else 10_000
        warmup = min(self.hparams.warmup_steps, max(total // 10, 1))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
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
        """Free-running decoding (defaults: ``test_decoding``, ``beam_size``, ``decode_ctc_weight``,
        ``decode_lm_weight``; a language-model weight needs a model trained with one)."""
        hp = self.hparams
        lm_weight = self.resolve_lm_weight(lm_weight)
        return decode_batch(
            self.model,
            self.tokenizer,
            waveform,
            lengths,
            mode=hp.test_decoding if mode is None else mode,
            beam_size=hp.beam_size if beam_size is None else beam_size,
            ctc_weight=hp.decode_ctc_weight if ctc_weight is None else ctc_weight,
            length_penalty=hp.length_penalty,
            language_model=self.language_model if lm_weight > 0 else None,
            lm_weight=lm_weight,
            return_attention=return_attention,
        )

    def resolve_lm_weight(self, lm_weight: float | None) -> float:
        """The language-model weight a decode uses: ``decode_lm_weight`` by default (ignored, as
        documented, without a language model); an explicit weight above 0 needs a language model."""
        if lm_weight is None:
            return self.hparams.decode_lm_weight if self.language_model is not None else 0.0
        if lm_weight > 0 and self.language_model is None:
            raise UserError(
                f"lm_weight {lm_weight}: this checkpoint has no language model (trained with lm_hidden_dim 0)"
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
            starts = attention_word_starts(result.attention, ranges, method=self.hparams.alignment_method)
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
        self._evaluate("val", batch, self.hparams.val_decoding, alignment=False)
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
        self._evaluate("test", batch, self.hparams.test_decoding, alignment=True)

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

        count = min(self.hparams.num_overlays, len(batch.texts))
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
