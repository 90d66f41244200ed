"""Spatial transformer classifier: localisation net -> the core's transformer -> classifier.

Jaderberg et al. 2015, "Spatial Transformer Networks" (section 4.1, the ST-CNN of distorted and
cluttered MNIST). The localisation net sees a downsampled copy of the input and predicts
``theta``; :class:`multiattn.stn.SpatialTransformer` resamples the *raw* [0, 1] image into a
small output (the warped digit); the classifier normalises it and classifies. With
``use_transformer=False`` the same classifier sees the whole input: the paper's CNN baseline on
the same data.

Collapse guards (docs/conventions.md, "Spatial transformer"): the transformer head is identity-initialised by the core; the
warp runs before normalisation, so zero padding is the dark background; ``align_corners`` is
explicit; the system gives the localisation parameters a smaller learning rate.

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` input size, ``h, w`` warped size, ``F``
localisation features, ``K`` classes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from multiattn.stn import STN_HEADS, ScaleTranslateHead, SpatialTransformer

__all__ = ["TRANSFORMS", "STNOutput", "LocalizationNet", "SmallCNN", "build_classifier", "STNClassifier"]

TRANSFORMS = ("affine", "scale_translate", "scale_translate_anisotropic", "projective", "tps")


class STNOutput(NamedTuple):
    """Output of :class:`STNClassifier`.

    Attributes:
        logits: ``(B, K)``.
        theta: ``(B, 2, 3)`` / ``(B, 3, 3)``, or ``None`` without the transformer.
        warped: ``(B, C, h, w)`` what the classifier saw (the input itself without the transformer).
    """

    logits: Tensor
    theta: Tensor | None
    warped: Tensor


def _conv_block(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


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
        layers: list[nn.Module] = [nn.MaxPool2d(downsample)] if downsample > 1 else []
        previous = in_channels
        for width in channels:
            layers += [_conv_block(previous, width, 5), nn.MaxPool2d(2)]
            previous = width
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
            _conv_block(in_channels, first, 5),
            nn.MaxPool2d(2),
            _conv_block(first, second, 5),
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


def build_classifier(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    channels: tuple[int, int],
    hidden_dim: int,
    dropout: float,
) -> nn.Module:
    """``"small_cnn"``, or any timm model name (built with ``pretrained=False``).

    Raises:
        ValueError: an unknown name, listing the valid choices.
    """
    if name == "small_cnn":
        return SmallCNN(
            in_channels=in_channels,
            num_classes=num_classes,
            channels=channels,
            hidden_dim=hidden_dim,
            dropout=dropout,
        )
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"unknown classifier {name!r}; use 'small_cnn' or a timm model name (timm.list_models())"
        )
    return timm.create_model(
        name, pretrained=False, in_chans=in_channels, num_classes=num_classes, drop_rate=dropout
    )


class STNClassifier(nn.Module):
    """Localisation net -> spatial transformer -> classifier (Jaderberg et al. 2015).

    Args:
        in_channels: ``C`` of the input images.
        num_classes: ``K``.
        use_transformer: ``False`` gives the no-transformer baseline (the classifier sees the
            whole input).
        transform: ``affine``, ``scale_translate`` (isotropic), ``scale_translate_anisotropic``
            or ``projective``.
        output_size: ``(h, w)`` of the warped image.
        localization_channels: conv widths of the localisation net.
        localization_hidden_dim: ``F``.
        localization_downsample: max-pool factor of the localisation net's input.
        classifier: ``small_cnn`` or a timm model name.
        classifier_channels: widths of the small CNN's two stages.
        classifier_hidden_dim: hidden width of the small CNN's MLP.
        dropout: classifier dropout.
        align_corners: the grid convention of the warp (and of the reported corners).
        padding_mode: ``grid_sample`` padding (``zeros`` = the dark background, since the warp
            runs before normalisation; ``border`` for photos).
        mean: per-channel mean subtracted after warping.
        std: per-channel std divided after warping.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        use_transformer: bool = True,
        transform: str = "affine",
        output_size: tuple[int, int] = (28, 28),
        localization_channels: tuple[int, ...] = (20, 20),
        localization_hidden_dim: int = 50,
        localization_downsample: int = 2,
        classifier: str = "small_cnn",
        classifier_channels: tuple[int, int] = (32, 64),
        classifier_hidden_dim: int = 256,
        dropout: float = 0.3,
        align_corners: bool = False,
        padding_mode: str = "zeros",
        mean: tuple[float, ...] = (0.1307,),
        std: tuple[float, ...] = (0.3081,),
    ) -> None:
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; valid transforms: {', '.join(TRANSFORMS)}")
        if len(mean) not in (1, in_channels) or len(std) not in (1, in_channels):
            raise ValueError(
                f"mean / std: expected 1 or {in_channels} values, received {len(mean)} / {len(std)}"
            )
        self.use_transformer = use_transformer
        self.transformer: SpatialTransformer | None = None
        if use_transformer:
            localization = LocalizationNet(
                in_channels=in_channels,
                channels=tuple(localization_channels),
                hidden_dim=localization_hidden_dim,
                downsample=localization_downsample,
            )
            if transform == "scale_translate_anisotropic":
                head = ScaleTranslateHead(in_features=localization.out_features, anisotropic=True)
            else:
                head = STN_HEADS[transform](in_features=localization.out_features)
            self.transformer = SpatialTransformer(
                localization=localization,
                head=head,
                output_size=tuple(output_size),
                align_corners=align_corners,
                padding_mode=padding_mode,
            )
        self.classifier = build_classifier(
            classifier,
            in_channels=in_channels,
            num_classes=num_classes,
            channels=tuple(classifier_channels),
            hidden_dim=classifier_hidden_dim,
            dropout=dropout,
        )
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
        theta = None
        warped = images
        if self.transformer is not None:
            warped, theta = self.transformer(images)  # (B, C, h, w), (B, 2, 3)
        normalised = (warped - self.mean) / self.std
        return STNOutput(logits=self.classifier(normalised), theta=theta, warped=warped)
