"""LightningModule of the captioning task: training loss, free-running validation, metrics, overlays.

Training is teacher-forced cross-entropy over the caption words (padding ignored) plus lambda
times the doubly stochastic attention penalty of Show, Attend and Tell (Xu et al. 2015, eq. 14).
Validation and test decode free-running with the core's batched beam search and score the
captions with pycocoevalcap (BLEU-1..4, METEOR when Java is present, ROUGE-L, CIDEr-D; corpus
level, all references); on the embedded scenes also the object-naming accuracy and the attention
scores of :class:`~multiattn.tasks.captioning.scoring.SceneScorer`. ``val/loss`` is teacher-forced and
only a loss; no language metric ever comes from teacher forcing.

The model is built as soon as the vocabulary is known: from the ``vocab`` argument (a checkpoint)
or, in ``setup``, from the data module's training split; the vocabulary is then written into the
hyper-parameters, so the checkpoint rebuilds itself (``multiattn.checkpoint.load_system``).

Shape legend: ``B`` batch, ``S`` image side, ``T`` caption steps, ``H, W`` grid.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from multiattn.metrics.captioning import caption_metrics
from multiattn.tasks.captioning.datasets import CaptionBatch
from multiattn.tasks.captioning.images import denormalize
from multiattn.tasks.captioning.model import Caption, CaptionModel, build_caption_model
from multiattn.tasks.captioning.scoring import SceneScorer
from multiattn.tasks.captioning.vocab import Vocabulary
from multiattn.tasks.common.distributed import gather_records

__all__ = ["CaptioningSystem"]


class CaptioningSystem(pl.LightningModule):
    """Show, Attend and Tell (or a Transformer decoder) over a CNN / timm grid.

    Args:
        vocab: the vocabulary as a list (filled from the data module when ``None``).
        input_size: image side the model expects (filled from the data module when ``None``).
        encoder: ``cnn`` (small CNN from scratch) or ``timm``.
        encoder_channels: ``cnn``: channels per stage.
        encoder_strides: ``cnn``: stride per stage (their product is the grid's stride).
        encoder_name: ``timm``: backbone name, e.g. ``resnet18``.
        encoder_pretrained: ``timm``: load pretrained weights (downloads when online).
        encoder_weights_file: ``timm``: local backbone weights file (implies pretrained).
        fine_tune_encoder: ``timm``: train the backbone too (else frozen).
        decoder: ``show_attend_tell`` (LSTM + soft attention) or ``transformer``.
        embed_dim: word embedding size (transformer: model dim ``D``).
        hidden_dim: LSTM hidden size.
        attn_dim: soft attention MLP size.
        num_heads: transformer heads.
        num_layers: transformer layers.
        ff_dim: transformer feed-forward size.
        dropout: dropout.
        gate: the gating scalar beta of soft attention.
        attention_penalty: lambda of the doubly stochastic penalty (``show_attend_tell`` only).
        lr: learning rate (AdamW).
        encoder_lr: learning rate of a fine-tuned timm backbone (default ``lr / 10``).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the cosine decay.
        beam_size: beam size of validation / test / prediction decoding (1 = greedy).
        max_len: longest decoded caption (words + end).
        length_penalty: exponent of the length normaliser (0 = raw log-probabilities).
        length_norm: ``gnmt`` or ``simple`` (see ``multiattn.decoding.beam``).
        compile_attention: score the soft attention with one ``torch.compile`` kernel when
            decoding (validation, test, ``caption``): faster for many images at once, after a
            one-off compilation (docs/captioning.md, "Decoding speed").
        use_java: Java for METEOR and the PTB tokenizer; ``None`` = when ``java`` is on PATH.
        log_overlays: log attention overlays of a few validation images every epoch.
        num_overlays: how many.
    """

    def __init__(
        self,
        *,
        vocab: list[str] | None = None,
        input_size: int | None = None,
        encoder: Literal["cnn", "timm"] = "cnn",
        encoder_channels: list[int] = [32, 64, 96, 128, 128],  # noqa: B006 - jsonargparse needs the literal
        encoder_strides: list[int] = [2, 2, 2, 1, 1],  # noqa: B006
        encoder_name: str | None = None,
        encoder_pretrained: bool = False,
        encoder_weights_file: str | None = None,
        fine_tune_encoder: bool = False,
        decoder: Literal["show_attend_tell", "transformer"] = "show_attend_tell",
        embed_dim: int = 128,
        hidden_dim: int = 256,
        attn_dim: int = 128,
        num_heads: int = 4,
        num_layers: int = 3,
        ff_dim: int = 512,
        dropout: float = 0.3,
        gate: bool = True,
        attention_penalty: float = 0.0,
        lr: float = 2e-3,
        encoder_lr: float | None = None,
        weight_decay: float = 1e-4,
        warmup_steps: int = 200,
        beam_size: int = 3,
        max_len: int = 30,
        length_penalty: float = 1.0,
        length_norm: Literal["gnmt", "simple"] = "gnmt",
        compile_attention: bool = False,
        use_java: bool | None = None,
        log_overlays: bool = True,
        num_overlays: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model: CaptionModel | None = None
        self.vocab: Vocabulary | None = None
        if vocab is not None:
            self._build(Vocabulary(vocab))
        # Per evaluated image: (image id, references, generated words, scene counts or None).
        self._outputs: list[tuple[Any, list[str], list[str], dict[str, float] | None]] = []
        self._scene_scorer: SceneScorer | None = None
        self._overlay_items: list[tuple[Any, list[str], Any]] = []

    # ----- construction -------------------------------------------------------------------------
    def _build(self, vocab: Vocabulary) -> None:
        hp = self.hparams
        self.vocab = vocab
        self.model = build_caption_model(
            vocab_size=len(vocab),
            encoder=hp.encoder,
            encoder_channels=tuple(hp.encoder_channels),
            encoder_strides=tuple(hp.encoder_strides),
            encoder_name=hp.encoder_name,
            encoder_pretrained=hp.encoder_pretrained,
            encoder_weights_file=hp.encoder_weights_file,
            fine_tune_encoder=hp.fine_tune_encoder,
            decoder=hp.decoder,
            embed_dim=hp.embed_dim,
            hidden_dim=hp.hidden_dim,
            attn_dim=hp.attn_dim,
            num_heads=hp.num_heads,
            num_layers=hp.num_layers,
            ff_dim=hp.ff_dim,
            dropout=hp.dropout,
            gate=hp.gate,
            max_len=max(64, hp.max_len + 2),
        )

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.model is None:
            if datamodule is None or getattr(datamodule, "vocab", None) is None:
                raise RuntimeError(
                    "CaptioningSystem: no vocabulary (pass vocab= or train with a caption data module)"
                )
            self._build(datamodule.vocab)
            # The checkpoint must rebuild the model without the data: store the vocabulary.
            self.hparams["vocab"] = self.vocab.to_list()
        elif datamodule is not None and hasattr(datamodule, "set_vocab"):
            datamodule.set_vocab(self.vocab)  # ids must mean what this model learned
        if self.hparams.input_size is None and datamodule is not None:
            self.hparams["input_size"] = int(datamodule.image_size)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        assert self.model is not None
        encoder_params = [p for p in self.model.encoder.parameters() if p.requires_grad]
        other = [
            p for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith("encoder.")
        ]
        groups = [{"params": other, "lr": hp.lr}]
        if encoder_params:
            scratch = hp.encoder == "cnn"
            groups.append(
                {"params": encoder_params, "lr": hp.lr if scratch else (hp.encoder_lr or hp.lr / 10)}
            )
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(hp.warmup_steps, total // 4)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / max(warmup, 1)
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----- training -----------------------------------------------------------------------------
    def _loss(self, batch: CaptionBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert self.model is not None
        need_attention = self.hparams.attention_penalty > 0 and self.hparams.decoder == "show_attend_tell"
        output = self.model(batch.images, batch.tokens, batch.lengths, with_attention=need_attention)
        return self.model.loss(
            output, batch.tokens, batch.lengths, attention_penalty=self.hparams.attention_penalty
        )

    def training_step(self, batch: CaptionBatch | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was unreadable (already warned)
            return None
        loss, parts = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=len(batch))
        return loss

    # ----- free-running evaluation --------------------------------------------------------------
    def generate(self, images: torch.Tensor, **overrides: Any) -> list[Caption]:
        """Decode ``images (B, 3, S, S)`` with the configured search (``overrides`` replace settings)."""
        assert self.model is not None
        hp = self.hparams
        settings = dict(
            beam_size=hp.beam_size,
            max_len=hp.max_len,
            length_penalty=hp.length_penalty,
            length_norm=hp.length_norm,
            compile_attention=hp.compile_attention,
        )
        settings.update(overrides)
        return self.model.generate(images, **settings)

    def on_validation_epoch_start(self) -> None:
        self._reset_eval()

    def on_test_epoch_start(self) -> None:
        self._reset_eval()

    def _reset_eval(self) -> None:
        self._outputs = []
        self._overlay_items = []
        size = int(self.hparams.input_size or 0)
        self._scene_scorer = SceneScorer((size, size)) if size else None

    def _evaluate(self, batch: CaptionBatch | None, prefix: str) -> None:
        if batch is None:
            return
        assert self.vocab is not None
        loss, _ = self._loss(batch)
        self.log(f"{prefix}/loss", loss, batch_size=len(batch), sync_dist=True)
        captions = self.generate(batch.images)
        for i, caption in enumerate(captions):
            words = self.vocab.decode_words(caption.tokens)
            scene = None
            if batch.objects is not None and self._scene_scorer is not None:
                scene = self._scene_scorer.score(words, caption.attention, batch.objects[i])
            self._outputs.append((batch.image_ids[i], batch.references[i], words, scene))
            if len(self._overlay_items) < self.hparams.num_overlays:
                picture = denormalize(batch.images[i].detach().cpu()).numpy()  # (S, S, 3)
                self._overlay_items.append((picture, words, caption.attention))

    def validation_step(self, batch: CaptionBatch | None, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: CaptionBatch | None, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _epoch_metrics(self, prefix: str) -> dict[str, float]:
        # Corpus metrics over every process's images (one process: this one's), each image once.
        outputs = gather_records(self._outputs, key=lambda record: record[0])
        if not outputs:
            return {}
        references = [refs for _, refs, _, _ in outputs]
        hypotheses = [" ".join(words) for _, _, words, _ in outputs]
        scores = caption_metrics(references, hypotheses, use_java=self.hparams.use_java)
        scenes = [scene for *_, scene in outputs if scene is not None]
        if self._scene_scorer is not None and scenes:
            self._scene_scorer.reset()
            for scene in scenes:
                self._scene_scorer.merge(scene)
            scores.update(self._scene_scorer.compute())
        for name, value in scores.items():
            self.log(f"{prefix}/{name}", value, prog_bar=name in ("bleu_4", "pointing_game"))
        return scores

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._outputs = []
            return
        self._epoch_metrics("val")
        if self.hparams.log_overlays and self._overlay_items:
            from multiattn.tasks.captioning.overlay import caption_figure
            from multiattn.tasks.common.overlay_logging import log_overlay

            for k, (picture, words, attention) in enumerate(self._overlay_items):
                log_overlay(self.trainer, f"val/overlay_{k}", caption_figure(picture, words, attention))

    def on_test_epoch_end(self) -> None:
        self.test_scores = self._epoch_metrics("test")

    def predict_step(self, batch: CaptionBatch | None, batch_idx: int) -> list[dict[str, Any]]:
        if batch is None:
            return []
        assert self.vocab is not None
        return [
            {"image_id": image_id, "caption": self.vocab.decode(c.tokens)}
            for image_id, c in zip(batch.image_ids, self.generate(batch.images))
        ]
