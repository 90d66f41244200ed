"""Image encoders that turn an image into a grid of annotation vectors.

Show, Attend and Tell (Xu et al. 2015, section 3.1.1) attends over the ``H x W`` grid of a
convolutional feature map, each cell an annotation vector ``a_i`` of ``C`` channels. Two
encoders give that grid:

- :class:`ConvEncoder`: a small CNN trained from scratch (the default for the embedded scenes;
  with its default 3x3 stages a cell sees 47 pixels, about half a 96-pixel scene;
  ``kernel_sizes`` and ``dilations`` narrow or widen that).
- :class:`TimmEncoder`: any timm backbone by name as a feature map (``features_only=True``,
  last stage), pretrained through timm when online or from a local weights file, frozen or
  fine-tuned.

:class:`WithCoordinates` appends each cell's position to its annotation vector, so that the
context the decoder attends to says where it looked (the relation words need it when nothing
else tells the decoder where objects are).

Shape legend: ``B`` batch, ``S`` image side, ``C`` feature channels, ``H, W`` grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from multiattn.io import UserError
from multiattn.masks import check_shape
from multiattn.positional import cell_centres

__all__ = ["ConvEncoder", "TimmEncoder", "WithCoordinates"]


class ConvEncoder(nn.Module):
    """Conv -> BatchNorm -> ReLU stages; the product of ``strides`` is the grid's stride.

    Args:
        channels: output channels of each stage.
        strides: stride of each stage (same length as ``channels``).
        in_channels: image channels.
        kernel_sizes: each stage's kernel side; ``None`` = 3 everywhere. Odd at stride 1; at
            stride 2 an even kernel (4) centres each output cell on the 2x2 block it stands for,
            an odd one (3) half an input pixel up and left of it (:attr:`grid_offset`).
        dilations: each stage's kernel dilation; ``None`` = 1 everywhere. With ``kernel_sizes``
            they set how many input pixels a cell sees (:attr:`receptive_field`) without changing
            the grid: 1x1 kernels after the last stride narrow it, dilated ones widen it at the
            same cost.

    Attributes:
        receptive_field: input pixels one grid cell sees (along one side).
        grid_offset: where each cell's receptive field is centred, in image pixels, relative to
            the centre of the ``reduction x reduction`` tile it stands for in the overlays and the
            attention scores (negative: up and left). 0 when every stride-2 stage has an even
            kernel; -3.5 for three 3x3 stride-2 stages (the class default).
    """

    def __init__(
        self,
        *,
        channels: Sequence[int] = (32, 64, 96, 128, 128),
        strides: Sequence[int] = (2, 2, 2, 1, 1),
        in_channels: int = 3,
        kernel_sizes: Sequence[int] | None = None,
        dilations: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ValueError(
                f"channels and strides: expected equal non-zero lengths, received {channels}, {strides}"
            )
        kernels = [3] * len(channels) if kernel_sizes is None else [int(k) for k in kernel_sizes]
        if len(kernels) != len(channels) or any(k < 1 for k in kernels):
            raise ValueError(
                f"kernel_sizes: expected {len(channels)} sizes >= 1 (one per stage), received {list(kernel_sizes)}"
            )
        spread = [1] * len(channels) if dilations is None else [int(d) for d in dilations]
        if len(spread) != len(channels) or any(d < 1 for d in spread):
            raise ValueError(
                f"dilations: expected {len(channels)} values >= 1 (one per stage), received {list(dilations)}"
            )
        layers: list[nn.Module] = []
        previous = in_channels
        self.receptive_field, jump = 1, 1  # input pixels one output cell sees; input pixels per step
        self.grid_offset = 0.0
        for index, (width, stride, kernel, dilation) in enumerate(zip(channels, strides, kernels, spread)):
            # Output cell j reads input pixels s*j - p .. s*j - p + (k-1)d: centred on its s-pixel
            # block [s*j, s*j + s) when p = ((k-1)d + 1 - s) / 2, which needs that to be whole.
            excess = (kernel - 1) * dilation + 1 - stride
            if excess >= 0 and excess % 2 == 0:
                padding = excess // 2
            elif stride > 1 and kernel % 2 == 1:
                padding = dilation * (kernel // 2)  # keeps the grid's size, off centre by excess/2 - p
            else:
                raise ValueError(
                    f"kernel_sizes: stage {index}: a kernel of {kernel} at stride {stride} cannot keep "
                    f"the grid centred (use an odd kernel at stride 1)"
                )
            self.grid_offset += (excess / 2 - padding) * jump
            self.receptive_field += (kernel - 1) * dilation * jump
            jump *= stride
            layers += [
                nn.Conv2d(
                    previous, width, kernel, stride=stride, padding=padding, dilation=dilation, bias=False
                ),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            previous = width
        self.body = nn.Sequential(*layers)
        self.out_channels = previous
        self.reduction = 1
        for stride in strides:
            self.reduction *= stride

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> ``(B, C, S / reduction, S / reduction)``."""
        check_shape("images", images, (None, self.body[0].in_channels, None, None))
        return self.body(images)


class TimmEncoder(nn.Module):
    """The last feature map of a timm backbone.

    Args:
        name: a timm model name (``resnet18``, ``convnext_tiny``, ...).
        pretrained: load timm's pretrained weights (downloads unless ``weights_file`` is given).
        weights_file: a local ``state_dict`` file for the backbone (``.pth`` / ``.safetensors``),
            passed to timm as ``pretrained_cfg_overlay=dict(file=...)``; implies ``pretrained``.
        fine_tune: train the backbone too; otherwise it is frozen and kept in eval mode (its
            BatchNorm statistics stay those of pre-training).
    """

    def __init__(
        self, *, name: str, pretrained: bool = False, weights_file: str | None = None, fine_tune: bool = False
    ) -> None:
        super().__init__()
        import timm

        kwargs = {}
        if weights_file:
            pretrained = True
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights_file)}
        try:
            self.backbone = timm.create_model(
                name, features_only=True, out_indices=(-1,), pretrained=pretrained, **kwargs
            )
        except RuntimeError as error:
            if "Unknown model" in str(error):
                raise UserError(
                    f"--model.model.encoder.backbone {name}: not a timm model ({error})"
                ) from None
            raise UserError(
                f"{weights_file or name}: cannot load backbone weights: {str(error)[:200]}"
            ) from None
        except (FileNotFoundError, OSError) as error:
            raise UserError(
                f"{weights_file or name}: cannot load backbone weights ({type(error).__name__})"
            ) from None
        self.out_channels = int(self.backbone.feature_info.channels()[-1])
        self.reduction = int(self.backbone.feature_info.reduction()[-1])
        self.fine_tune = fine_tune
        if not fine_tune:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> TimmEncoder:
        super().train(mode)
        if not self.fine_tune:
            self.backbone.eval()  # frozen: BatchNorm keeps its pre-trained statistics
        return self

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> ``(B, C, H, W)``."""
        return self.backbone(images)[-1]


class WithCoordinates(nn.Module):
    """An encoder whose grid gets two more channels: each cell's ``x`` and ``y`` centre in ``[-1, 1]``.

    Args:
        encoder: ``(B, 3, S, S) -> (B, C, H, W)`` with ``out_channels`` and ``reduction``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.out_channels = int(encoder.out_channels) + 2
        self.reduction = encoder.reduction

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> ``(B, C + 2, H, W)``."""
        grid = self.encoder(images)  # (B, C, H, W)
        batch, _, height, width = grid.shape
        ys, xs = (
            cell_centres(height, device=grid.device),
            cell_centres(width, device=grid.device),
        )  # (H,), (W,)
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy")).to(grid.dtype)  # (2, H, W): x, then y
        return torch.cat([grid, coords.expand(batch, -1, -1, -1)], dim=1)
