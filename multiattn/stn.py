"""Spatial transformer: predict a transform, resample the image with it.

Jaderberg, Simonyan, Zisserman and Kavukcuoglu 2015, "Spatial Transformer Networks". A
localisation network maps the input to features, a head maps them to transform parameters
``theta`` (section 3.1), a grid generator maps every output pixel's normalised coordinate through
``theta`` into the input (3.2), and a bilinear sampler reads the input there (3.3). The
restricted ``[[s, 0, tx], [0, s, ty]]`` form is the paper's "attention" transform (crop, translate,
isotropic scale).

Heads start at the identity transform (zero weights, identity bias): a randomly initialised head
makes the warp zoom or drift before the classifier has learnt anything, the usual cause of STN
collapse. ``align_corners`` is always explicit, because ``affine_grid`` and ``grid_sample`` must
agree on it and the pixel coordinates of a region depend on it (:func:`theta_to_corners`).

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` input size, ``h, w`` output size, ``F``
localisation feature size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multiattn.masks import check_shape
from multiattn.recording import emit, is_recording

__all__ = [
    "AffineHead",
    "ScaleTranslateHead",
    "ProjectiveHead",
    "STN_HEADS",
    "build_stn_head",
    "warp",
    "SpatialTransformer",
    "theta_to_corners",
    "output_corners",
    "pixels_to_normalized",
    "region_iou",
    "OUTPUT_CORNERS",
]

# Output-space corners in normalised coordinates, clockwise from the top-left (x, y).
OUTPUT_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def _identity_linear(in_features: int, bias: list[float]) -> nn.Linear:
    layer = nn.Linear(in_features, len(bias))
    nn.init.zeros_(layer.weight)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor(bias))
    return layer


class AffineHead(nn.Module):
    """Full 6-parameter affine transform. ``(B, F) -> theta (B, 2, 3)``, identity at init.

    Args:
        in_features: ``F``, size of the localisation features.
    """

    def __init__(self, *, in_features: int) -> None:
        super().__init__()
        self.linear = _identity_linear(in_features, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features).view(-1, 2, 3)  # (B, 6) -> (B, 2, 3)


class ScaleTranslateHead(nn.Module):
    """The attention transform ``[[s, 0, tx], [0, s, ty]]``. ``(B, F) -> theta (B, 2, 3)``.

    Args:
        in_features: ``F``, size of the localisation features.
        anisotropic: predict separate ``sx``, ``sy`` instead of one isotropic scale.
    """

    def __init__(self, *, in_features: int, anisotropic: bool = False) -> None:
        super().__init__()
        self.anisotropic = anisotropic
        # Parameter order: (s, tx, ty) or (sx, sy, tx, ty).
        self.linear = _identity_linear(in_features, [1.0, 1.0, 0.0, 0.0] if anisotropic else [1.0, 0.0, 0.0])

    def forward(self, features: Tensor) -> Tensor:
        params = self.linear(features)  # (B, 3) or (B, 4)
        if self.anisotropic:
            scale_x, scale_y, shift_x, shift_y = params.unbind(-1)
        else:
            scale_x, shift_x, shift_y = params.unbind(-1)
            scale_y = scale_x
        zero = torch.zeros_like(scale_x)
        rows = [torch.stack([scale_x, zero, shift_x], -1), torch.stack([zero, scale_y, shift_y], -1)]
        return torch.stack(rows, dim=1)  # (B, 2, 3)


class ProjectiveHead(nn.Module):
    """8-parameter projective transform (homography, ``H[2, 2] = 1``). ``(B, F) -> theta (B, 3, 3)``.

    Args:
        in_features: ``F``, size of the localisation features.
    """

    def __init__(self, *, in_features: int) -> None:
        super().__init__()
        self.linear = _identity_linear(in_features, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def forward(self, features: Tensor) -> Tensor:
        params = self.linear(features)  # (B, 8)
        one = torch.ones_like(params[:, :1])  # (B, 1)
        return torch.cat([params, one], dim=1).view(-1, 3, 3)  # (B, 9) -> (B, 3, 3)


STN_HEADS: dict[str, type[nn.Module]] = {
    "affine": AffineHead,
    "scale_translate": ScaleTranslateHead,
    "projective": ProjectiveHead,
}


def build_stn_head(name: str, in_features: int) -> nn.Module:
    """Build a head from :data:`STN_HEADS` by name (``ValueError`` listing valid names otherwise)."""
    if name not in STN_HEADS:
        raise ValueError(f"unknown STN head {name!r}; valid names: {', '.join(sorted(STN_HEADS))}")
    return STN_HEADS[name](in_features=in_features)


def _projective_grid(theta: Tensor, size: tuple[int, int, int, int], align_corners: bool) -> Tensor:
    """Sampling grid of a homography: ``(B, 3, 3) -> (B, h, w, 2)`` normalised input coordinates."""
    identity = torch.eye(2, 3, dtype=theta.dtype, device=theta.device).expand(size[0], 2, 3)
    base = F.affine_grid(identity, list(size), align_corners=align_corners)  # (B, h, w, 2)
    homogeneous = torch.cat([base, torch.ones_like(base[..., :1])], dim=-1)  # (B, h, w, 3)
    mapped = torch.einsum("bhwj,bij->bhwi", homogeneous, theta)  # (B, h, w, 3)
    return mapped[..., :2] / _safe_denominator(mapped[..., 2:])


def _safe_denominator(z: Tensor, eps: float = 1e-6) -> Tensor:
    # Points at infinity (z -> 0) would give inf coordinates; keep the sign, bound the magnitude.
    return torch.where(z >= 0, z.clamp(min=eps), z.clamp(max=-eps))


def warp(
    images: Tensor, theta: Tensor, output_size: tuple[int, int], *, align_corners: bool, padding_mode: str
) -> Tensor:
    """Resample ``images`` through ``theta`` with bilinear interpolation.

    The grid and the sampling run in float32 with autocast off: bf16 grid coordinates are off by
    about a quarter pixel on a 60-pixel image.

    Args:
        images: ``(B, C, H, W)``.
        theta: ``(B, 2, 3)`` affine or ``(B, 3, 3)`` projective, mapping output to input normalised
            coordinates.
        output_size: ``(h, w)``.
        align_corners: ``grid_sample``'s convention (``False``: -1 and 1 are the outer pixel edges;
            ``True``: the outer pixel centres).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Returns:
        ``(B, C, h, w)`` in the dtype of ``images``.
    """
    if images.dim() != 4:
        raise ValueError(f"images: expected shape (B, C, H, W), received {tuple(images.shape)}")
    batch, channels = images.shape[0], images.shape[1]
    if theta.dim() != 3 or theta.shape[0] != batch or tuple(theta.shape[1:]) not in ((2, 3), (3, 3)):
        raise ValueError(
            f"theta: expected shape ({batch}, 2, 3) or ({batch}, 3, 3), received {tuple(theta.shape)}"
        )
    size = (batch, channels, int(output_size[0]), int(output_size[1]))
    with torch.autocast(device_type=images.device.type, enabled=False):
        theta32 = theta.float()
        if theta.shape[1] == 2:
            grid = F.affine_grid(theta32, list(size), align_corners=align_corners)  # (B, h, w, 2)
        else:
            grid = _projective_grid(theta32, size, align_corners)  # (B, h, w, 2)
        out = F.grid_sample(
            images.float(), grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners
        )
    return out.to(images.dtype)


class SpatialTransformer(nn.Module):
    """Localisation network + head + sampler.

    When recording, ``theta`` is emitted with axes ``("batch", "row", "col")`` and meta
    ``kind`` (``"affine_theta"`` or ``"projective_theta"``), ``input_hw`` and ``align_corners``, which
    is all :func:`theta_to_corners` needs to draw the sampled region.

    Args:
        localization: maps ``(B, C, H, W)`` images to ``(B, F)`` features.
        head: maps ``(B, F)`` features to ``theta`` (an entry of :data:`STN_HEADS`).
        output_size: ``(h, w)`` of the warped image.
        align_corners: passed to both ``affine_grid`` and ``grid_sample``.
        padding_mode: ``grid_sample`` padding; ``"border"`` avoids the black frame that can make
            a zoomed-out transform collapse.
    """

    def __init__(
        self,
        *,
        localization: nn.Module,
        head: nn.Module,
        output_size: tuple[int, int],
        align_corners: bool = False,
        padding_mode: str = "border",
    ) -> None:
        super().__init__()
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(
                f"padding_mode: expected 'zeros', 'border' or 'reflection', received {padding_mode!r}"
            )
        self.localization = localization
        self.head = head
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.align_corners = align_corners
        self.padding_mode = padding_mode

    def localization_parameters(self) -> list[nn.Parameter]:
        """Parameters of the localisation net and head (train them with a smaller learning rate)."""
        return [*self.localization.parameters(), *self.head.parameters()]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Warp ``images``.

        Args:
            images: ``(B, C, H, W)``.

        Returns:
            ``(warped (B, C, h, w), theta (B, 2, 3) or (B, 3, 3))``.
        """
        if images.dim() != 4:
            raise ValueError(f"images: expected shape (B, C, H, W), received {tuple(images.shape)}")
        theta = self.head(self.localization(images))
        warped = warp(
            images, theta, self.output_size, align_corners=self.align_corners, padding_mode=self.padding_mode
        )
        if is_recording():
            kind = "affine_theta" if theta.shape[1] == 2 else "projective_theta"
            emit(
                self,
                theta,
                axes=("batch", "row", "col"),
                kind=kind,
                input_hw=(images.shape[2], images.shape[3]),
                align_corners=self.align_corners,
            )
        return warped, theta


def output_corners(theta: Tensor) -> Tensor:
    """Normalised input coordinates of the four output corners (-1,-1), (1,-1), (1,1), (-1,1).

    Args:
        theta: ``(B, 2, 3)`` affine or ``(B, 3, 3)`` projective.

    Returns:
        ``(B, 4, 2)`` float32 ``(x, y)`` in ``[-1, 1]`` input coordinates (outside when the region
        leaves the image), differentiable in ``theta``.
    """
    if theta.dim() != 3 or tuple(theta.shape[1:]) not in ((2, 3), (3, 3)):
        raise ValueError(f"theta: expected shape (B, 2, 3) or (B, 3, 3), received {tuple(theta.shape)}")
    theta = theta.float()
    corners = torch.tensor(OUTPUT_CORNERS, dtype=theta.dtype, device=theta.device)  # (4, 2)
    homogeneous = torch.cat([corners, torch.ones_like(corners[:, :1])], dim=1)  # (4, 3)
    mapped = torch.einsum("kj,bij->bki", homogeneous, theta)  # (B, 4, 2 or 3)
    if theta.shape[1] == 3:
        mapped = mapped[..., :2] / _safe_denominator(mapped[..., 2:])  # (B, 4, 2)
    return mapped


def _pixel_scale(input_hw: tuple[int, int], like: Tensor) -> Tensor:
    height, width = int(input_hw[0]), int(input_hw[1])
    return torch.tensor([width, height], dtype=like.dtype, device=like.device)  # (x, y) order


def theta_to_corners(theta: Tensor, input_hw: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Input pixel coordinates of the four output corners: the region the transformer sampled.

    Pixel coordinates put pixel ``i``'s centre at ``i`` (matplotlib's ``imshow`` convention).
    With ``align_corners=False`` normalised -1 and 1 are the outer pixel *edges*:
    ``x_pix = ((x + 1) * W - 1) / 2``; with ``True`` they are the outer pixel *centres*:
    ``x_pix = (x + 1) * (W - 1) / 2``. :func:`pixels_to_normalized` is the inverse.

    Args:
        theta: ``(B, 2, 3)`` affine or ``(B, 3, 3)`` projective.
        input_hw: ``(H, W)`` of the input image.
        align_corners: the convention the warp used.

    Returns:
        ``(B, 4, 2)`` float32 ``(x, y)`` for output corners (-1,-1), (1,-1), (1,1), (-1,1).
    """
    mapped = output_corners(theta)  # (B, 4, 2)
    size = _pixel_scale(input_hw, mapped)
    if align_corners:
        return (mapped + 1.0) * (size - 1.0) / 2.0
    return ((mapped + 1.0) * size - 1.0) / 2.0


def pixels_to_normalized(points: Tensor, input_hw: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Pixel ``(..., 2)`` ``(x, y)`` -> normalised coordinates: the inverse of :func:`theta_to_corners`' mapping."""
    size = _pixel_scale(input_hw, points)
    if align_corners:
        return points * 2.0 / (size - 1.0) - 1.0
    return (points * 2.0 + 1.0) / size - 1.0


def region_iou(corners: Tensor, boxes: Tensor, *, exact: bool = False) -> Tensor:
    """IoU of each sampled region with a ground-truth box.

    By default the region is the axis-aligned bounding box of its corners: exact for scale +
    translate transforms (their regions are axis-aligned rectangles), the enclosing rectangle of
    the sampled parallelogram for rotations and shears. ``exact=True`` intersects the quadrilateral
    itself with the box (Sutherland-Hodgman clipping, shoelace areas; a Python loop over the batch,
    meant for evaluation, not differentiable). torchvision.ops has no polygon IoU.

    Args:
        corners: ``(B, 4, 2)`` pixel ``(x, y)`` from :func:`theta_to_corners`.
        boxes: ``(B, 4)`` pixel ``(x0, y0, x1, y1)`` in the same coordinates.
        exact: polygon IoU instead of bounding-box IoU.

    Returns:
        ``(B,)`` float32 IoU in ``[0, 1]`` (0 when both regions are empty).
    """
    check_shape("corners", corners, (None, 4, 2))
    check_shape("boxes", boxes, (corners.shape[0], 4))
    corners, boxes = corners.float(), boxes.float()
    if exact:
        values = [
            _polygon_box_iou(c.tolist(), b.tolist()) for c, b in zip(corners.detach().cpu(), boxes.cpu())
        ]
        return torch.tensor(values, dtype=torch.float32, device=corners.device)
    region = torch.cat([corners.amin(dim=1), corners.amax(dim=1)], dim=1)  # (B, 4) x0, y0, x1, y1
    top_left = torch.maximum(region[:, :2], boxes[:, :2])  # (B, 2)
    bottom_right = torch.minimum(region[:, 2:], boxes[:, 2:])  # (B, 2)
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)  # (B,)
    union = _box_area(region) + _box_area(boxes) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-12), torch.zeros_like(union))


def _box_area(boxes: Tensor) -> Tensor:
    return (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)  # (B,)


def _polygon_area(points: list[list[float]]) -> float:
    """Shoelace formula; orientation-independent."""
    total = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2.0


def _polygon_box_iou(points: list[list[float]], box: list[float]) -> float:
    """IoU of a simple polygon and an axis-aligned box, clipping the polygon by the box's half-planes."""
    x0, y0, x1, y1 = box
    clipped = points
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):

        def inside(
            p: list[float], axis: int = axis, bound: float = bound, keep_above: bool = keep_above
        ) -> bool:
            return p[axis] >= bound if keep_above else p[axis] <= bound

        def crossing(p: list[float], q: list[float], axis: int = axis, bound: float = bound) -> list[float]:
            t = (bound - p[axis]) / (q[axis] - p[axis])
            return [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]

        result = []
        for index, current in enumerate(clipped):
            previous = clipped[index - 1]
            if inside(current):
                if not inside(previous):
                    result.append(crossing(previous, current))
                result.append(current)
            elif inside(previous):
                result.append(crossing(previous, current))
        clipped = result
        if not clipped:
            break
    intersection = _polygon_area(clipped) if len(clipped) >= 3 else 0.0
    union = _polygon_area(points) + max(0.0, x1 - x0) * max(0.0, y1 - y0) - intersection
    return intersection / union if union > 0 else 0.0
