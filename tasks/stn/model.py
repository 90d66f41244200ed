"""Spatial transformer classifier: localisation net -> the core's transformer -> classifier.

Jaderberg et al. 2015, "Spatial Transformer Networks" (section 4.1, the ST-CNN of distorted and
cluttered MNIST). The localisation net sees a downsampled copy of the input and predicts
``theta``; :class:`multiattn.stn.SpatialTransformer` resamples the *raw* [0, 1] image into a
small output (the warped digit); the classifier normalises it and classifies. With
``transformer.enabled = false`` the same classifier sees the whole input: the paper's CNN baseline on
the same data.

Collapse guards (docs/conventions.md, "Spatial transformer"): the transformer head is identity-initialised by the core; the
warp runs before normalisation, so zero padding is the dark background; ``align_corners`` is
explicit; the system gives the localisation parameters a smaller learning rate.

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` input size, ``h, w`` warped size, ``F``
localisation features, ``K`` classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from multiattn.builders import fields, pick
from multiattn.stn import (
    STN_HEADS,
    GlimpseRefiner,
    ScaleTranslateHead,
    SoftArgmaxHead,
    SpatialTransformer,
    conv_block,
    conv_stages,
)

__all__ = [
    "STNModelConfig",
    "TransformerConfig",
    "LocalizationConfig",
    "ClassifierConfig",
    "TRANSFORMS",
    "HEADS",
    "CLASSIFIERS",
    "STNOutput",
    "LocalizationNet",
    "SmallCNN",
    "build_classifier",
    "STNClassifier",
    "build_model",
]


class STNOutput(NamedTuple):
    """Output of :class:`STNClassifier`.

    Attributes:
        logits: ``(B, K)``.
        theta: ``(B, 2, 3)`` / ``(B, 3, 3)``, or ``None`` without the transformer.
        warped: ``(B, C, h, w)`` what the classifier saw (the input itself without the transformer).
        localization_logits: ``(B, K)`` the localisation net's own class logits (heatmap
            localisation with ``class_maps``), else ``None``.
    """

    logits: Tensor
    theta: Tensor | None
    warped: Tensor
    localization_logits: Tensor | None = None


@dataclass(frozen=True)
class LocalizationConfig:
    """The localisation net: a coarse CNN on a downsampled input, predicting the transform.

    Attributes:
        kind: fc (the paper's: conv stages, then a fully connected layer predicting the transform)
            or heatmap (fully convolutional: the conv stages score every cell of a feature map,
            the translation is the soft-argmax of the scores and the scale comes from the
            feature vector pooled there; scale + translate transforms only).
        channels: conv widths of its stages (each: 5x5 conv, batch norm, ReLU, 2x2 max pool).
        hidden_dim: its feature size ``F`` (the transform head's input; fc only).
        downsample: max-pool factor applied to its input first.
        init_scale: heatmap: the region's scale at init (a centred zoom; 1 is the whole input).
        min_scale: heatmap: the smallest scale the head can predict.
        class_maps: heatmap: score one map per class, pooled into class logits that the
            system's ``localization_loss.class_map_weight`` trains on the label (the maps then
            light up on the object; see :class:`multiattn.stn.SoftArgmaxHead`).
        refine: a second look (:class:`multiattn.stn.GlimpseRefiner`): a small CNN reads a glimpse
            around the predicted region and corrects its size and centre to the object's extent
            (affine transforms: scale_translate, scale_translate_anisotropic, affine).
        refine_context: the refiner's glimpse side over the region's side.
        refine_start_epoch: training: the refiner is frozen (its zero-initialised correction is the
            identity) until this epoch, so the heatmap head finds the object first.
    """

    kind: Literal["fc", "heatmap"] = "fc"
    channels: tuple[int, ...] = (20, 20)
    hidden_dim: int = 50
    downsample: int = 2
    init_scale: float = 0.5
    min_scale: float = 0.1
    class_maps: bool = False
    refine: bool = False
    refine_context: float = 1.5
    refine_start_epoch: int = 0


@dataclass(frozen=True)
class TransformerConfig:
    """The spatial transformer in front of the classifier.

    Attributes:
        enabled: false trains the same classifier on the whole input (the paper's CNN baseline).
        transform: the transform the head predicts (scale_translate is isotropic; tps: a thin-plate
            spline on 4x4 control points).
        output_size: (h, w) of the warped image the classifier sees.
        align_corners: grid convention of the warp (and of the reported region corners).
        padding_mode: grid_sample padding (zeros = the dark background, since the warp runs before
            normalisation; border for photos).
        localization: the localisation net.
    """

    enabled: bool = True
    transform: Literal["affine", "scale_translate", "scale_translate_anisotropic", "projective", "tps"] = (
        "affine"
    )
    output_size: tuple[int, int] = (28, 28)
    align_corners: bool = False
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros"
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)


@dataclass(frozen=True)
class ClassifierConfig:
    """The classifier of the warped image.

    Attributes:
        name: small_cnn (two 5x5 conv stages and an MLP) or any timm model name (untrained).
        channels: widths of the small CNN's two stages.
        hidden_dim: hidden width of the small CNN's MLP.
        dropout: dropout before the last layer.
    """

    name: str = "small_cnn"
    channels: tuple[int, int] = (32, 64)
    hidden_dim: int = 256
    dropout: float = 0.3


@dataclass(frozen=True)
class STNModelConfig:
    """The spatial transformer classifier.

    Attributes:
        transformer: the spatial transformer (localisation net, transform, warp).
        classifier: the classifier of the warped image.
        mean: per-channel normalisation mean, applied after the warp.
        std: per-channel normalisation std, applied after the warp.
    """

    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    mean: tuple[float, ...] = (0.1307,)
    std: tuple[float, ...] = (0.3081,)


class LocalizationNet(nn.Module):
    """Coarse CNN predicting transform features: ``(B, C, H, W) -> (B, F)``.

    The input is max-pooled by ``downsample`` first: the transform only needs to know roughly
    where the object is, and a 60x60 input at half resolution costs a quarter of the compute.

    Args:
        in_channels: ``C``.
        channels: width of each conv stage (each stage: 5x5 conv, BN, ReLU, 2x2 max pool).
        hidden_dim: ``F``.
        downsample: max-pool factor applied to the input first.
        pool_size: side of the feature grid fed to the fully connected layer (fixed for any
            input size; 7 is exact for a 60x60 input downsampled by 2).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: tuple[int, ...] = (20, 20),
        hidden_dim: int = 50,
        downsample: int = 2,
        pool_size: int = 7,
    ) -> None:
        super().__init__()
        layers, previous = conv_stages(in_channels, channels, downsample, pool_last=True)
        layers += [
            nn.AdaptiveAvgPool2d(pool_size),
            nn.Flatten(),  # (B, c, p, p) -> (B, c * p * p)
            nn.Linear(previous * pool_size * pool_size, hidden_dim),
            nn.ReLU(inplace=True),
        ]
        self.net = nn.Sequential(*layers)
        self.out_features = hidden_dim

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)  # (B, C, H, W) -> (B, F)


class HeatmapLocalizationNet(nn.Module):
    """Fully convolutional localisation net: ``(B, C, H, W) -> (B, F, h, w)`` feature map.

    The same stages as :class:`LocalizationNet`, without the last max pool and the fully
    connected layer: every cell of the map sees a window of the input (about 28 pixels for two
    stages after a downsample of 2, on a 15x15 map for a 60x60 input), and
    :class:`~multiattn.stn.SoftArgmaxHead` scores the cells.

    Args:
        in_channels: ``C``.
        channels: width of each conv stage (5x5 conv, BN, ReLU; a 2x2 max pool between stages).
        downsample: max-pool factor applied to the input first.
    """

    def __init__(
        self, *, in_channels: int, channels: tuple[int, ...] = (20, 20), downsample: int = 2
    ) -> None:
        super().__init__()
        # no pool after the last stage: a finer map to place the region on
        layers, previous = conv_stages(in_channels, channels, downsample, pool_last=False)
        self.net = nn.Sequential(*layers)
        self.out_features = previous

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)  # (B, C, H, W) -> (B, F, h, w)


class SmallCNN(nn.Module):
    """The default classifier, LeNet-shaped: two 5x5 conv stages, then an MLP. ``(B, C, h, w) -> (B, K)``.

    Two wide 5x5 stages cost fewer memory passes than four 3x3 convs, which is what bounds
    training speed on a CPU.

    Args:
        in_channels: ``C``.
        num_classes: ``K``.
        channels: widths of the two stages (each: 5x5 conv, BN, ReLU, 2x2 max pool).
        hidden_dim: width of the hidden fully connected layer.
        dropout: before the last layer.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        channels: tuple[int, int] = (32, 64),
        hidden_dim: int = 256,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        first, second = channels
        self.features = nn.Sequential(
            conv_block(in_channels, first, 5),
            nn.MaxPool2d(2),
            conv_block(first, second, 5),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7),  # 28x28 -> 7x7 already; larger inputs are pooled to it
        )
        self.head = nn.Sequential(
            nn.Flatten(),  # (B, second, 7, 7) -> (B, second * 49)
            nn.Linear(second * 49, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))  # (B, C, h, w) -> (B, K)


def _small_cnn(*, in_channels: int, num_classes: int, config: ClassifierConfig) -> nn.Module:
    options = fields(config, "channels", "hidden_dim", "dropout")
    return SmallCNN(in_channels=in_channels, num_classes=num_classes, **options)


CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {"small_cnn": _small_cnn}
"""Classifier name -> builder; any other name is a timm model (:func:`build_classifier`)."""


def build_classifier(config: ClassifierConfig, *, in_channels: int, num_classes: int) -> nn.Module:
    """A :data:`CLASSIFIERS` entry, or the timm model called ``config.name`` (``pretrained=False``).

    Raises:
        ValueError: an unknown name, listing the valid choices.
    """
    if config.name in CLASSIFIERS:
        return CLASSIFIERS[config.name](in_channels=in_channels, num_classes=num_classes, config=config)
    import timm

    if not timm.is_model(config.name):
        valid = ", ".join(repr(name) for name in CLASSIFIERS)
        raise ValueError(
            f"classifier: unknown name {config.name!r}; valid names: {valid} or a timm model name "
            "(timm.list_models())"
        )
    return timm.create_model(
        config.name, pretrained=False, in_chans=in_channels, num_classes=num_classes, drop_rate=config.dropout
    )


def _anisotropic(*, in_features: int) -> nn.Module:
    return ScaleTranslateHead(in_features=in_features, anisotropic=True)


HEADS: dict[str, Callable[..., nn.Module]] = {
    **STN_HEADS,
    "scale_translate_anisotropic": _anisotropic,
}
"""Transform name -> head builder (the core's :data:`~multiattn.stn.STN_HEADS` plus the anisotropic scale)."""

TRANSFORMS = tuple(HEADS)
HEATMAP_TRANSFORMS = ("scale_translate", "scale_translate_anisotropic")
"""The transforms a heatmap localisation net predicts (translation by soft-argmax, scale)."""
REFINABLE_TRANSFORMS = ("affine", *HEATMAP_TRANSFORMS)
"""The transforms :class:`~multiattn.stn.GlimpseRefiner` corrects (affine ``(B, 2, 3)`` ones)."""


def _fc_localization(
    stn: TransformerConfig, *, in_channels: int, num_classes: int
) -> tuple[nn.Module, nn.Module]:
    loc = stn.localization
    localization = LocalizationNet(
        in_channels=in_channels,
        channels=tuple(loc.channels),
        hidden_dim=loc.hidden_dim,
        downsample=loc.downsample,
    )
    head = pick(HEADS, stn.transform, what="transform")(in_features=localization.out_features)
    return localization, head


def _heatmap_localization(
    stn: TransformerConfig, *, in_channels: int, num_classes: int
) -> tuple[nn.Module, nn.Module]:
    if stn.transform not in HEATMAP_TRANSFORMS:
        raise ValueError(
            f"localization.kind heatmap predicts {' or '.join(HEATMAP_TRANSFORMS)}, "
            f"not transform {stn.transform!r}"
        )
    loc = stn.localization
    localization = HeatmapLocalizationNet(
        in_channels=in_channels, channels=tuple(loc.channels), downsample=loc.downsample
    )
    head = SoftArgmaxHead(
        in_features=localization.out_features,
        anisotropic=stn.transform == "scale_translate_anisotropic",
        init_scale=loc.init_scale,
        min_scale=loc.min_scale,
        num_classes=num_classes if loc.class_maps else 0,
    )
    return localization, head


LOCALIZATIONS: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "fc": _fc_localization,
    "heatmap": _heatmap_localization,
}
"""``localization.kind`` -> builder of the localisation net and its transform head."""


class STNClassifier(nn.Module):
    """Spatial transformer (or none) -> normalisation -> classifier (Jaderberg et al. 2015).

    Built by :func:`build_model`.

    Args:
        transformer: the core's :class:`~multiattn.stn.SpatialTransformer`, or ``None`` for the
            no-transformer baseline (the classifier sees the whole input).
        classifier: ``(B, C, h, w) -> (B, K)``.
        mean: per-channel mean subtracted after warping.
        std: per-channel std divided after warping.
    """

    def __init__(
        self,
        *,
        transformer: SpatialTransformer | None,
        classifier: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.use_transformer = transformer is not None
        self.transformer = transformer
        self.classifier = classifier
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def localization_parameters(self) -> list[nn.Parameter]:
        """The localisation net's and head's parameters (empty without the transformer)."""
        return [] if self.transformer is None else self.transformer.localization_parameters()

    def forward(self, images: Tensor) -> STNOutput:
        """Classify ``images`` (``(B, C, H, W)`` float in [0, 1]) -> :class:`STNOutput`."""
        if images.dim() != 4:
            raise ValueError(f"images: expected shape (B, C, H, W), received {tuple(images.shape)}")
        theta = class_logits = None
        warped = images
        if self.transformer is not None:
            warped, theta, class_logits = self.transformer(
                images, with_class_logits=True
            )  # (B, C, h, w), (B, 2, 3)
        normalised = (warped - self.mean) / self.std
        return STNOutput(
            logits=self.classifier(normalised), theta=theta, warped=warped, localization_logits=class_logits
        )


def build_model(config: STNModelConfig, *, in_channels: int = 1, num_classes: int = 10) -> STNClassifier:
    """The :class:`STNClassifier` that ``config`` describes, for ``in_channels`` inputs and ``num_classes``."""
    mean, std = tuple(config.mean), tuple(config.std)
    if len(mean) not in (1, in_channels) or len(std) not in (1, in_channels):
        raise ValueError(f"mean / std: expected 1 or {in_channels} values, received {len(mean)} / {len(std)}")
    stn = config.transformer
    transformer = None
    if stn.enabled:
        build = pick(LOCALIZATIONS, stn.localization.kind, what="localization.kind")
        localization, head = build(stn, in_channels=in_channels, num_classes=num_classes)
        refiner = None
        if stn.localization.refine:
            if stn.transform not in REFINABLE_TRANSFORMS:
                raise ValueError(
                    f"localization.refine corrects {', '.join(REFINABLE_TRANSFORMS)} transforms, "
                    f"not {stn.transform!r}"
                )
            refiner = GlimpseRefiner(
                in_channels=in_channels,
                context=stn.localization.refine_context,
                align_corners=stn.align_corners,
            )
        transformer = SpatialTransformer(
            localization=localization,
            head=head,
            output_size=tuple(stn.output_size),
            align_corners=stn.align_corners,
            padding_mode=stn.padding_mode,
            refiner=refiner,
        )
    classifier = build_classifier(config.classifier, in_channels=in_channels, num_classes=num_classes)
    return STNClassifier(transformer=transformer, classifier=classifier, mean=mean, std=std)
