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

from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn

from multiattn.attention import attention_region_nll, step_contexts
from multiattn.configs import from_plain, to_plain
from multiattn.io import UserError
from multiattn.metrics.captioning import box_cell_coverage, caption_metrics
from multiattn.schedules import warmup_cosine
from multiattn.tasks.captioning.datasets import CaptionBatch
from multiattn.tasks.captioning.images import denormalize
from multiattn.tasks.captioning.model import Caption, CaptionModel, CaptionModelConfig, build_model
from multiattn.tasks.captioning.scoring import SceneScorer, align_words_to_objects
from multiattn.tasks.captioning.vocab import Vocabulary
from multiattn.tasks.common.configured import ConfiguredSystem
from multiattn.tasks.common.distributed import gather_records

__all__ = ["CaptioningSystem", "CaptionOptimConfig", "CaptionDecodingConfig"]


@dataclass(frozen=True)
class CaptionOptimConfig:
    """AdamW and its warm-up + cosine schedule (:func:`multiattn.schedules.warmup_cosine`).

    Attributes:
        learning_rate: peak learning rate of everything but a fine-tuned timm backbone.
        encoder_learning_rate: peak learning rate of a fine-tuned timm backbone (default: a tenth of
            learning_rate; a cnn encoder trains at learning_rate).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the cosine decay (at most a quarter of the run).
        lr_floor: the rate the cosine decay ends at, as a fraction of the peak rate.
    """

    learning_rate: float = 2e-3
    encoder_learning_rate: float | None = None
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    lr_floor: float = 0.05


@dataclass(frozen=True)
class CaptionDecodingConfig:
    """Free-running decoding of validation, test, prediction and the caption command.

    Attributes:
        beam_size: beam size (1 = greedy search).
        max_len: longest decoded caption (words + end).
        length_penalty: exponent of the length normaliser (0 = raw log-probabilities).
        length_norm: gnmt or simple (see multiattn.decoding.beam).
        compile_attention: score the soft attention with one torch.compile kernel when decoding:
            faster for many images at once, after a one-off compilation (docs/captioning.md,
            "Decoding speed").
    """

    beam_size: int = 3
    max_len: int = 30
    length_penalty: float = 1.0
    length_norm: Literal["gnmt", "simple"] = "gnmt"
    compile_attention: bool = False


# The flat hyper-parameters of checkpoints written before the nested configs, and their places now.
FLAT_LAYOUT = {
    "encoder": "model.encoder.name",
    "encoder_channels": "model.encoder.channels",
    "encoder_strides": "model.encoder.strides",
    "encoder_name": "model.encoder.backbone",
    "encoder_pretrained": "model.encoder.pretrained",
    "encoder_weights_file": "model.encoder.weights_file",
    "fine_tune_encoder": "model.encoder.fine_tune",
    "decoder": "model.decoder.name",
    **{key: f"model.decoder.{key}" for key in ("embed_dim", "hidden_dim", "attn_dim", "gate")},
    **{key: f"model.decoder.{key}" for key in ("num_heads", "num_layers", "ff_dim", "dropout")},
    "lr": "optim.learning_rate",
    "encoder_lr": "optim.encoder_learning_rate",
    **{key: f"optim.{key}" for key in ("weight_decay", "warmup_steps", "lr_floor")},
    **{key: f"decoding.{key}" for key in ("beam_size", "max_len", "length_penalty", "length_norm")},
    "compile_attention": "decoding.compile_attention",
    "num_overlays": "overlay_count",
}


class CaptioningSystem(ConfiguredSystem, pl.LightningModule):
    """Show, Attend and Tell (or a Transformer decoder) over a CNN / timm grid.

    Configs (:class:`~multiattn.tasks.common.configured.ConfiguredSystem`): the typed ones are
    :attr:`model_config`,
    :attr:`optim` and :attr:`decoding`.

    Args:
        model: the network (:func:`multiattn.tasks.captioning.model.build_model`).
        optim: optimiser and schedule.
        decoding: free-running decoding.
        attention_penalty: lambda of the doubly stochastic penalty (show_attend_tell only).
        attention_entropy: weight of the attention's mean entropy per word, a sharpening term
            without box supervision (show_attend_tell only; 0 = off; docs/captioning.md
            "Attention levers").
        attention_entropy_words: sharpen only the steps that emit one of these words (those that
            name an object: shapes and colours for the embedded scenes); ``None`` = every word.
            Words missing from the vocabulary are an error.
        attention_entropy_from_epoch: sharpen from this epoch on (0: from the start), so that
            the maps find their objects before they are asked to narrow.
        attention_box_weight: attention supervision, for comparison only (the default learns
            without boxes): weight of ``-log`` of the attention mass inside the box of the object
            that a training word names (:func:`multiattn.attention.attention_region_nll`; the
            embedded scenes' boxes and the scorer's word-to-object alignment; show_attend_tell
            only; 0 = off; docs/captioning.md "How much a cell sees, and attention
            supervision").
        context_word_weight: a grounding term without boxes: weight of the cross-entropy of each
            training word predicted from its step's attended annotation alone (``sum_i alpha_i a_i``,
            :func:`multiattn.attention.step_contexts`, through one linear layer used only in
            training), so the map must select the cells that show what the word names; the
            reconstruction idea of Ma et al. 2020, "Learning to Generate Grounded Visual Captions
            without Localization Supervision" (show_attend_tell only; 0 = off; docs/captioning.md
            "The word from its context alone").
        vocab: the vocabulary as a list (filled from the data module when ``None``).
        input_size: image side the model expects (filled from the data module when ``None``).
        use_java: Java for METEOR and the PTB tokenizer; ``None`` = when ``java`` is on PATH.
        log_overlays: log attention overlays of a few validation images every epoch.
        overlay_count: how many.
    """

    FLAT_LAYOUT = FLAT_LAYOUT

    def __init__(
        self,
        *,
        # frozen dataclasses: one shared default instance is safe
        model: CaptionModelConfig = CaptionModelConfig(),  # noqa: B008
        optim: CaptionOptimConfig = CaptionOptimConfig(),
        decoding: CaptionDecodingConfig = CaptionDecodingConfig(),
        attention_penalty: float = 0.0,
        attention_entropy: float = 0.0,
        attention_entropy_words: list[str] | None = None,
        attention_entropy_from_epoch: int = 0,
        attention_box_weight: float = 0.0,
        context_word_weight: float = 0.0,
        vocab: list[str] | None = None,
        input_size: int | None = None,
        use_java: bool | None = None,
        log_overlays: bool = True,
        overlay_count: int = 4,
    ) -> None:
        super().__init__()
        self.model_config = from_plain(CaptionModelConfig, model, name="model")
        self.optim = from_plain(CaptionOptimConfig, optim, name="optim")
        self.decoding = from_plain(CaptionDecodingConfig, decoding, name="decoding")
        self.save_hyperparameters()
        self.store_configs(model=self.model_config, optim=self.optim, decoding=self.decoding)
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
        words = self.hparams.get("attention_entropy_words") or ()
        missing = [word for word in words if word not in vocab]
        if missing:
            raise UserError(f"attention_entropy_words: not in the vocabulary: {', '.join(missing)}")
        self.vocab = vocab
        # Their token ids, once: a buffer (not saved) that follows the module to its device.
        ids = torch.tensor([vocab.index[word] for word in words], dtype=torch.long)
        self.register_buffer("_entropy_ids", ids if words else None, persistent=False)
        self.model = build_model(
            self.model_config, vocab_size=len(vocab), max_len=max(64, self.decoding.max_len + 2)
        )
        # Training only (decoding never reads it): the word from its step's context alone.
        self.context_head: nn.Linear | None = None
        if self.hparams.get("context_word_weight", 0.0) > 0:
            if self.model_config.decoder.name != "show_attend_tell":
                raise UserError("context_word_weight: needs the show_attend_tell decoder's soft attention")
            self.context_head = nn.Linear(self.model.encoder.out_channels, len(vocab))

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
        hp = self.optim
        assert self.model is not None
        encoder_params = [p for p in self.model.encoder.parameters() if p.requires_grad]
        other = [
            p for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith("encoder.")
        ]
        groups = [{"params": other, "lr": hp.learning_rate}]
        if encoder_params:
            scratch = self.model_config.encoder.name == "cnn"
            encoder_lr = hp.encoder_learning_rate or hp.learning_rate / 10
            groups.append({"params": encoder_params, "lr": hp.learning_rate if scratch else encoder_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        scheduler = warmup_cosine(
            optimizer,
            total_steps=int(self.trainer.estimated_stepping_batches),
            warmup_steps=hp.warmup_steps,
            floor=hp.lr_floor,
            max_warmup_fraction=0.25,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----- training -----------------------------------------------------------------------------
    def _loss(self, batch: CaptionBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert self.model is not None
        hp = self.hparams
        box_weight = hp.attention_box_weight
        entropy = hp.attention_entropy if self.current_epoch >= hp.attention_entropy_from_epoch else 0.0
        need_attention = (
            hp.attention_penalty > 0 or entropy > 0 or box_weight > 0 or self.context_head is not None
        ) and self.model_config.decoder.name == "show_attend_tell"
        output = self.model(batch.images, batch.tokens, batch.lengths, with_attention=need_attention)
        loss, parts = self.model.loss(
            output,
            batch.tokens,
            batch.lengths,
            attention_penalty=hp.attention_penalty,
            attention_entropy=entropy,
            entropy_token_ids=self._entropy_ids,  # None: every word is sharpened
        )
        if box_weight > 0 and output.attention is not None:
            if batch.objects is None:
                raise UserError(
                    "attention_box_weight: needs object boxes (the embedded scenes); this data has none"
                )
            parts["attention_box"] = self._attention_box_nll(output.attention, batch)
            loss = loss + box_weight * parts["attention_box"]
        if self.context_head is not None and output.attention is not None:
            logits = self.context_head(step_contexts(output.attention, output.features))  # (B, T, V)
            parts["context_word"] = self.model.token_nll(logits, batch.tokens)
            loss = loss + hp.context_word_weight * parts["context_word"]
        return loss, parts

    def _attention_box_nll(self, attention: torch.Tensor, batch: CaptionBatch) -> torch.Tensor:
        """``-log`` of the attention mass in the named object's box, over the teacher-forced steps
        whose target word names one object (aligned as the scorer aligns generated captions)."""
        assert self.vocab is not None
        batch_size, steps, height, width = attention.shape  # step t emits tokens[:, t + 1]
        rows, columns, boxes = [], [], []
        for row, objects in enumerate(batch.objects):
            words = self.vocab.decode_words(batch.tokens[row].tolist())  # word i: tokens[i + 1]
            owners, _ = align_words_to_objects(words, objects)
            for step, owner in enumerate(owners):
                if owner >= 0:
                    rows.append(row)
                    columns.append(step)
                    boxes.append(objects[owner]["box"])
        regions = attention.new_zeros(batch_size, steps, height, width, dtype=torch.float32)
        selected = torch.zeros(batch_size, steps, dtype=torch.bool, device=attention.device)
        if boxes:
            cover = box_cell_coverage(
                torch.tensor(boxes, device=attention.device), (height, width), tuple(batch.images.shape[-2:])
            )  # (n, H, W)
            regions[rows, columns] = cover
            selected[rows, columns] = True
        return attention_region_nll(attention, regions, selected)

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
        settings = to_plain(self.decoding)
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
            if len(self._overlay_items) < self.hparams.overlay_count:
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
