"""LightningModule of the spatial transformer classifier (Jaderberg et al. 2015).

Loss: cross-entropy on the classifier's logits. Logged per split (``train/``, ``val/``,
``test/``): ``loss``, ``acc`` (and ``test/error``), and where the data has true boxes and the
model a transformer, ``iou`` (mean IoU of the sampled region with the digit's box, via
:func:`multiattn.stn.region_iou`) and ``iou50`` (share of images with IoU > 0.5).

Optimiser: AdamW with two parameter groups; the localisation net and head train at
``localization_lr_scale`` times the learning rate (docs/conventions.md: a localisation net as fast as
the classifier makes the transform drift and collapse). One-cycle schedule by default.

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` input size, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from multiattn.configs import from_plain
from multiattn.stn import (
    output_corners,
    pixels_to_normalized,
    region_grid_lines,
    region_iou,
    theta_kind,
    theta_to_corners,
)
from multiattn.tasks.common.configured import ConfiguredSystem
from multiattn.tasks.stn.data import STNBatch
from multiattn.tasks.stn.model import STNModelConfig, STNOutput, build_model

__all__ = ["STNSystem", "STNOptimConfig", "BoxLossConfig", "LocalizationLossConfig"]


@dataclass(frozen=True)
class STNOptimConfig:
    """AdamW and its learning-rate schedule.

    Attributes:
        learning_rate: peak learning rate of the classifier.
        localization_lr_scale: the localisation net's learning rate relative to the classifier's.
        weight_decay: AdamW weight decay.
        scheduler: onecycle (warm-up then cosine annealing), cosine (annealing from the start) or none.
        warmup_fraction: share of the steps spent warming up (onecycle).
    """

    learning_rate: float = 2e-3
    localization_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    scheduler: Literal["onecycle", "cosine", "none"] = "onecycle"
    warmup_fraction: float = 0.1


@dataclass(frozen=True)
class BoxLossConfig:
    """An optional auxiliary loss pulling the sampled region towards the true box.

    Attributes:
        weight: weight of the smooth L1 loss on the region's four corners (relative to the box's
            size) when the data has boxes; 0 (the paper) lets the transformer learn from the class
            label alone.
        margin: the box is widened by this fraction of its size on each side for that loss, so the
            warped digit keeps a dark margin like MNIST's.
    """

    weight: float = 0.0
    margin: float = 0.05


@dataclass(frozen=True)
class LocalizationLossConfig:
    """Label-only losses that teach the transformer where to look (no boxes needed).

    Attributes:
        class_map_weight: weight of the cross-entropy of the localisation net's own class logits
            (heatmap localisation with ``class_maps``: per-class maps pooled by a smooth maximum),
            which makes the maps light up on the object from the label alone.
        area_weight: weight of the mean area of the sampled region (``|sx sy|`` of the affine
            part, 1 = the whole input): the region shrinks until cutting the object would cost
            the classifier more, so it fits the object instead of keeping a wide margin.
    """

    class_map_weight: float = 0.0
    area_weight: float = 0.0


# The flat hyper-parameters of checkpoints written before the nested configs, and their places now.
FLAT_LAYOUT = {
    "use_transformer": "model.transformer.enabled",
    "transform": "model.transformer.transform",
    "output_size": "model.transformer.output_size",
    "align_corners": "model.transformer.align_corners",
    "padding_mode": "model.transformer.padding_mode",
    "localization_channels": "model.transformer.localization.channels",
    "localization_hidden_dim": "model.transformer.localization.hidden_dim",
    "localization_downsample": "model.transformer.localization.downsample",
    "classifier": "model.classifier.name",
    "classifier_channels": "model.classifier.channels",
    "classifier_hidden_dim": "model.classifier.hidden_dim",
    "dropout": "model.classifier.dropout",
    "mean": "model.mean",
    "std": "model.std",
    "learning_rate": "optim.learning_rate",
    "localization_lr_scale": "optim.localization_lr_scale",
    "weight_decay": "optim.weight_decay",
    "scheduler": "optim.scheduler",
    "warmup_fraction": "optim.warmup_fraction",
    "box_loss_weight": "box_loss.weight",
    "box_margin": "box_loss.margin",
}


class STNSystem(ConfiguredSystem, pl.LightningModule):
    """Spatial transformer classifier: training, metrics, prediction, overlays.

    Configs (:class:`~multiattn.tasks.common.configured.ConfiguredSystem`): the typed ones are
    :attr:`model_config`,
    :attr:`optim` and :attr:`box_loss`.

    Args:
        model: the network (:func:`multiattn.tasks.stn.model.build_model`).
        optim: optimiser and schedule.
        box_loss: the optional auxiliary box loss.
        localization_loss: the label-only localisation losses.
        in_channels: image channels (1 for digits).
        num_classes: ``K``.
        input_size: ``(H, W)`` the app resizes user images to (adopted from the datamodule).
        class_names: names by label (adopted from the datamodule when ``None``; stored in the
            checkpoint).
        light_on_dark: the training images are light strokes on a dark background (the app
            inverts paper-like images to match).
        log_overlays: log a grid of sampled regions on the first validation batch each epoch.
        overlay_count: examples in that grid.
    """

    FLAT_LAYOUT = FLAT_LAYOUT

    def __init__(
        self,
        *,
        # frozen dataclasses: one shared default instance is safe
        model: STNModelConfig = STNModelConfig(),  # noqa: B008
        optim: STNOptimConfig = STNOptimConfig(),
        box_loss: BoxLossConfig = BoxLossConfig(),
        localization_loss: LocalizationLossConfig = LocalizationLossConfig(),
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: tuple[int, int] = (60, 60),
        class_names: list[str] | None = None,
        light_on_dark: bool = True,
        log_overlays: bool = True,
        overlay_count: int = 8,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names: expected {num_classes} names, received {len(class_names)}")
        self.model_config = from_plain(STNModelConfig, model, name="model")
        self.optim = from_plain(STNOptimConfig, optim, name="optim")
        self.box_loss = from_plain(BoxLossConfig, box_loss, name="box_loss")
        self.localization_loss = from_plain(
            LocalizationLossConfig, localization_loss, name="localization_loss"
        )
        self.save_hyperparameters()
        self.store_configs(
            model=self.model_config,
            optim=self.optim,
            box_loss=self.box_loss,
            localization_loss=self.localization_loss,
        )
        self.model = build_model(self.model_config, in_channels=in_channels, num_classes=num_classes)
        self._overlay_batch: dict[str, Tensor] | None = None

    # ---- set-up ------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        names = self.hparams.class_names
        return list(names) if names is not None else [str(i) for i in range(self.hparams.num_classes)]

    def setup(self, stage: str) -> None:
        """Check the datamodule fits the model; adopt its class names and input size."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        channels = getattr(datamodule, "in_channels", None)
        if channels is not None and channels != self.hparams.in_channels:
            raise ValueError(
                f"model.in_channels={self.hparams.in_channels} but the data has {channels} channels"
            )
        names = getattr(datamodule, "class_names", None)
        if stage in ("fit", "validate", "test") and hasattr(datamodule, "setup"):
            datamodule.setup(stage)
            names = getattr(datamodule, "class_names", None)
        if names is not None:
            if len(names) != self.hparams.num_classes:
                raise ValueError(
                    f"model.num_classes={self.hparams.num_classes} but the data has {len(names)} classes"
                )
            if self.hparams.class_names is None:
                self.hparams.class_names = list(names)
        light = getattr(datamodule, "light_on_dark", None)
        if light is not None:
            self.hparams.light_on_dark = bool(light)
        size = getattr(datamodule, "input_size", None)
        if size is not None:
            self.hparams.input_size = (int(size[0]), int(size[1]))

    # ---- forward and metrics -----------------------------------------------------------------
    def forward(self, images: Tensor) -> STNOutput:
        return self.model(images)

    def corners(self, theta: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """``(B, 4, 2)`` input pixel ``(x, y)`` of the sampled region's corners."""
        return theta_to_corners(theta, input_hw, align_corners=self.model_config.transformer.align_corners)

    def _step(self, batch: STNBatch, prefix: str) -> tuple[Tensor, STNOutput]:
        output = self.model(batch.images)
        logits = output.logits.float()
        loss = F.cross_entropy(logits, batch.labels)
        accuracy = (logits.argmax(dim=1) == batch.labels).float().mean()
        size = len(batch)
        on_step = prefix == "train"
        self.log(f"{prefix}/loss", loss, prog_bar=True, batch_size=size, on_step=on_step, on_epoch=True)
        self.log(f"{prefix}/acc", accuracy, prog_bar=True, batch_size=size, on_step=on_step, on_epoch=True)
        if prefix == "test":
            self.log("test/error", 1.0 - accuracy, batch_size=size)
        for name, (weight, value) in self.localization_losses(output, batch.labels).items():
            self.log(f"{prefix}/{name}", value, batch_size=size, on_step=on_step, on_epoch=True)
            loss = loss + weight * value
        if output.theta is not None and batch.boxes is not None:
            input_hw = tuple(batch.images.shape[-2:])
            if self.box_loss.weight > 0:
                box_loss = self._box_loss(output.theta, batch.boxes, input_hw)
                self.log(f"{prefix}/box_loss", box_loss, batch_size=size, on_step=on_step, on_epoch=True)
                loss = loss + self.box_loss.weight * box_loss
            corners = self.corners(output.theta, input_hw)
            iou = region_iou(corners, batch.boxes)
            self.log(f"{prefix}/iou", iou.mean(), batch_size=size, on_step=False, on_epoch=True)
            self.log(
                f"{prefix}/iou50", (iou > 0.5).float().mean(), batch_size=size, on_step=False, on_epoch=True
            )
        return loss, output

    def localization_losses(self, output: STNOutput, labels: Tensor) -> dict[str, tuple[float, Tensor]]:
        """The label-only localisation losses in use, ``{name: (weight, value)}`` (:class:`LocalizationLossConfig`).

        ``class_map_loss``: cross-entropy of the localisation net's class logits; ``region_area``:
        mean ``|det|`` of the affine part of ``theta`` (the region's area, 1 = the whole input).
        """
        prior, losses = self.localization_loss, {}
        if output.localization_logits is not None and prior.class_map_weight > 0:
            losses["class_map_loss"] = (
                prior.class_map_weight,
                F.cross_entropy(output.localization_logits.float(), labels),
            )
        if output.theta is not None and theta_kind(output.theta) == "affine_theta" and prior.area_weight > 0:
            linear = output.theta.float()[:, :, :2]  # (B, 2, 2)
            losses["region_area"] = (prior.area_weight, torch.linalg.det(linear).abs().mean())
        return losses

    def _box_loss(self, theta: Tensor, boxes: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """Smooth L1 between the region's corners and the (widened) box's, relative to the box size.

        Errors are divided by the box's width (x) and height (y), so a narrow digit ("1") is held
        to the same relative precision as a wide one: the loss tracks IoU, not pixels.
        """
        height, width = input_hw
        margin = self.box_loss.margin * (boxes[:, 2:] - boxes[:, :2])  # (B, 2)
        low, high = boxes[:, :2] - margin, boxes[:, 2:] + margin  # (B, 2) pixel x, y
        size = torch.tensor([width, height], dtype=boxes.dtype, device=boxes.device)
        align = self.model_config.transformer.align_corners
        low = pixels_to_normalized(low, input_hw, align_corners=align)  # (B, 2)
        high = pixels_to_normalized(high, input_hw, align_corners=align)  # (B, 2)
        target = torch.stack(
            [low, torch.stack([high[:, 0], low[:, 1]], -1), high, torch.stack([low[:, 0], high[:, 1]], -1)],
            dim=1,
        )  # (B, 4, 2) clockwise from the top-left, as OUTPUT_CORNERS
        mapped = output_corners(theta)  # (B, 4, 2)
        extent = (high - low).clamp(min=2.0 / size)[:, None, :].float()  # (B, 1, 2), at least a pixel
        relative = (mapped - target.float()) / extent
        return F.smooth_l1_loss(relative, torch.zeros_like(relative), beta=0.1)

    def training_step(self, batch: STNBatch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: STNBatch, batch_idx: int) -> None:
        _, output = self._step(batch, "val")
        if batch_idx == 0 and self.hparams.log_overlays:
            count = self.hparams.overlay_count
            self._overlay_batch = {
                "images": batch.images[:count].detach().float().cpu(),
                "warped": output.warped[:count].detach().float().cpu(),
                "probabilities": output.logits[:count].detach().float().softmax(dim=1).cpu(),
                "theta": None if output.theta is None else output.theta[:count].detach().float().cpu(),
            }

    def test_step(self, batch: STNBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: STNBatch | Tensor, batch_idx: int = 0) -> dict[str, Tensor | None]:
        """Label, class probabilities, ``theta`` and the region's corners (input pixels) per image.

        Returns:
            ``{"label" (B,), "probabilities" (B, K), "theta" (B, 2, 3) | None,
            "corners" (B, 4, 2) | None, "warped" (B, C, h, w)}``.
        """
        images = batch.images if isinstance(batch, STNBatch) else batch
        output = self.model(images)
        probabilities = output.logits.float().softmax(dim=1)
        theta = None if output.theta is None else output.theta.float()
        corners = None if theta is None else self.corners(theta, tuple(images.shape[-2:]))
        return {
            "label": probabilities.argmax(dim=1),
            "probabilities": probabilities,
            "theta": theta,
            "corners": corners,
            "warped": output.warped.float(),
        }

    # ---- overlays ----------------------------------------------------------------------------
    def overlay_figure(self, images: Tensor, warped: Tensor, probabilities: Tensor, theta: Tensor | None):
        """Region overlay grid of a few examples (see :mod:`multiattn.tasks.stn.overlay`)."""
        from multiattn.tasks.stn.overlay import region_figure

        corners = None if theta is None else self.corners(theta, tuple(images.shape[-2:]))
        names = self.class_names
        confidence, label = probabilities.max(dim=1)
        titles = [f"{names[int(k)]} ({float(p):.2f})" for k, p in zip(label, confidence)]
        corner_list = [None] * len(images) if corners is None else [c.numpy() for c in corners]
        grids = None
        if theta is not None and theta_kind(theta) == "tps_control":  # curved region: draw the warped grid
            lines = region_grid_lines(
                theta, tuple(images.shape[-2:]), align_corners=self.model_config.transformer.align_corners
            )
            grids = [g.numpy() for g in lines]
        return region_figure(
            [img.numpy() for img in images], corner_list, [w.numpy() for w in warped], titles, grids=grids
        )

    def on_train_epoch_start(self) -> None:
        # The refiner learns only from `refine_start_epoch` on: frozen before, its zero-initialised
        # correction is the identity, so the heatmap head finds the object on its own first.
        refiner = None if self.model.transformer is None else self.model.transformer.refiner
        if refiner is not None:
            refiner.requires_grad_(
                self.current_epoch >= self.model_config.transformer.localization.refine_start_epoch
            )

    def on_validation_epoch_end(self) -> None:
        if self._overlay_batch is None or self._trainer is None:
            return
        from multiattn.tasks.common.overlay_logging import log_overlay

        fig = self.overlay_figure(**self._overlay_batch)
        log_overlay(self.trainer, "stn/regions", fig)
        self._overlay_batch = None

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.optim
        localization = {id(p) for p in self.model.localization_parameters()}
        rest = [p for p in self.model.parameters() if id(p) not in localization]
        groups = [{"params": rest, "lr": hp.learning_rate}]
        if localization:
            groups.append(
                {
                    "params": self.model.localization_parameters(),
                    "lr": hp.learning_rate * hp.localization_lr_scale,
                }
            )
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if hp.scheduler == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[g["lr"] for g in groups],
                total_steps=total,
                pct_start=hp.warmup_fraction,
                anneal_strategy="cos",
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
