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

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multiattn.masks import check_shape
from multiattn.positional import cell_centres
from multiattn.recording import emit, is_recording

__all__ = [
    "AffineHead",
    "ScaleTranslateHead",
    "ProjectiveHead",
    "SoftArgmaxHead",
    "soft_argmax",
    "STN_HEADS",
    "build_stn_head",
    "warp",
    "SpatialTransformer",
    "GlimpseRefiner",
    "theta_to_corners",
    "theta_kind",
    "map_output_points",
    "output_corners",
    "pixels_to_normalized",
    "region_outline",
    "region_grid_lines",
    "ThinPlateSplineHead",
    "tps_control_points",
    "tps_map",
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


def soft_argmax(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Expected position under a spatial softmax.

    Args:
        logits: ``(B, h, w)`` heatmap scores.

    Returns:
        ``(position (B, 2), weights (B, h, w))``: the softmax-weighted mean of the cell centres in
        normalised ``(x, y)`` (``align_corners=False``: cell ``i`` of ``n`` is centred at
        ``(2 i + 1) / n - 1``), and the softmax weights themselves.
    """
    batch, height, width = logits.shape
    weights = logits.float().reshape(batch, -1).softmax(dim=1).view(batch, height, width)
    ys, xs = cell_centres(height, device=logits.device), cell_centres(width, device=logits.device)
    x = (weights.sum(dim=1) * xs).sum(dim=1)  # (B,) marginal over rows, then columns
    y = (weights.sum(dim=2) * ys).sum(dim=1)
    return torch.stack([x, y], dim=1), weights


class SoftArgmaxHead(nn.Module):
    """The attention transform from a heatmap: translation by soft-argmax, scale from pooled features.

    ``(B, F, h, w)`` feature map -> theta ``(B, 2, 3)`` ``[[sx, 0, tx], [0, sy, ty]]``. A 1x1
    convolution scores every cell; ``(tx, ty)`` is the soft-argmax of those scores (spatially
    equivariant: a digit moved by a cell moves the region by a cell, so the translation is learnt
    from few examples), and the scale is a linear map of the feature vector pooled with the same
    weights, bounded to ``[min_scale, max_scale]`` by a sigmoid (no collapse to an empty region).

    At init the scores are zero (uniform weights: the centre of the input) and the scale is
    ``init_scale``: a centred zoom, so the glimpse has to move to see an off-centre object.

    With ``num_classes`` the cells are scored once per class and the heatmap is their
    log-sum-exp over classes; :meth:`class_logits` pools the maps into image-level logits, so a
    cross-entropy on the *label* teaches the maps where the object is directly, instead of only
    through the sampler's gradient (which is weak while the glimpse misses the object). This is
    weakly supervised localisation in the manner of class activation maps (Zhou et al. 2016).

    Args:
        in_features: ``F``, channels of the feature map.
        anisotropic: separate ``sx``, ``sy`` (a narrow digit gets a narrow region).
        init_scale: the scale at init, in ``(min_scale, max_scale)``.
        min_scale: smallest scale (region side relative to the input's).
        max_scale: largest scale.
        num_classes: score one map per class (see above); 0 scores a single map.
    """

    def __init__(
        self,
        *,
        in_features: int,
        anisotropic: bool = True,
        init_scale: float = 0.5,
        min_scale: float = 0.1,
        max_scale: float = 1.0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if not 0 < min_scale < init_scale < max_scale:
            raise ValueError(
                f"scales: expected 0 < min_scale < init_scale < max_scale, received "
                f"{min_scale}, {init_scale}, {max_scale}"
            )
        self.anisotropic, self.min_scale, self.max_scale = anisotropic, min_scale, max_scale
        self.num_classes = num_classes
        self.score = nn.Conv2d(in_features, max(1, num_classes), 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        logit = math.log((init_scale - min_scale) / (max_scale - init_scale))
        self.scale = _identity_linear(in_features, [logit, logit] if anisotropic else [logit])

    def scores(self, features: Tensor) -> Tensor:
        """Cell scores ``(B, S, h, w)``: one map, or one per class with ``num_classes``."""
        check_shape("features", features, (None, self.score.in_channels, None, None))
        return self.score(features)

    @staticmethod
    def class_logits(scores: Tensor) -> Tensor:
        """Image-level class logits ``(B, K)`` from per-class maps: a smooth maximum over the cells
        (log-sum-exp less ``log(h w)``), so that one place has to carry the evidence."""
        flat = scores.float().flatten(2)  # (B, K, h * w)
        return flat.logsumexp(dim=2) - math.log(flat.shape[2])

    def forward(self, features: Tensor, scores: Tensor | None = None) -> Tensor:
        """``theta (B, 2, 3)`` from the feature map (and its :meth:`scores`, if already computed)."""
        scores = self.scores(features) if scores is None else scores
        heat = scores.float().logsumexp(dim=1) if self.num_classes else scores.squeeze(1)  # (B, h, w)
        shift, weights = soft_argmax(heat)  # (B, 2), (B, h, w)
        pooled = torch.einsum("bfhw,bhw->bf", features.float(), weights)  # (B, F)
        scale = self.min_scale + (self.max_scale - self.min_scale) * torch.sigmoid(self.scale(pooled).float())
        scale_x, scale_y = (scale[:, 0], scale[:, 1]) if self.anisotropic else (scale[:, 0], scale[:, 0])
        zero = torch.zeros_like(scale_x)
        rows = [torch.stack([scale_x, zero, shift[:, 0]], -1), torch.stack([zero, scale_y, shift[:, 1]], -1)]
        return torch.stack(rows, dim=1)  # (B, 2, 3)


def tps_control_points(grid_size: int) -> Tensor:
    """The thin-plate spline's fixed output-space control points: a ``grid_size x grid_size``
    regular grid over ``[-1, 1]^2``, x fastest. ``(K, 2)`` float32 with ``K = grid_size ** 2``.

    The four output corners are control points, so a TPS maps them exactly where ``theta`` says.
    """
    if grid_size < 2:
        raise ValueError(f"grid_size: expected at least 2, received {grid_size}")
    axis = torch.linspace(-1.0, 1.0, grid_size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)  # (K, 2)


class ThinPlateSplineHead(nn.Module):
    """Thin-plate spline transform (the paper's section 3.4 names it beside affine and projective).

    ``(B, F) -> theta (B, K, 2)``: where each of the ``K`` fixed output control points
    (:func:`tps_control_points`) lands in the input, in normalised coordinates. Identity at init:
    every control point lands on itself, and the spline is then the identity map.

    Args:
        in_features: ``F``, size of the localisation features.
        grid_size: control points per side (``K = grid_size ** 2``).
    """

    def __init__(self, *, in_features: int, grid_size: int = 4) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.linear = _identity_linear(in_features, tps_control_points(grid_size).reshape(-1).tolist())

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features).view(features.shape[0], -1, 2)  # (B, 2K) -> (B, K, 2)


STN_HEADS: dict[str, type[nn.Module]] = {
    "affine": AffineHead,
    "scale_translate": ScaleTranslateHead,
    "projective": ProjectiveHead,
    "tps": ThinPlateSplineHead,
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


def _tps_kernel(distance_sq: Tensor) -> Tensor:
    """The thin-plate radial basis ``U(r) = r^2 log r^2`` (0 at r = 0), from squared distances."""
    return distance_sq * torch.log(distance_sq.clamp(min=1e-12))


@functools.lru_cache(maxsize=8)
def _tps_inverse(grid_size: int) -> Tensor:
    """``(K + 3, K)`` float64: the spline's coefficients ``[W; A]`` are this times the targets.

    The spline through targets ``Y`` solves ``L [W; A] = [Y; 0]`` with
    ``L = [[U(|p_i - p_j|), P], [P^T, 0]]`` and ``P`` the rows ``(1, x_i, y_i)`` of the fixed
    control points (Bookstein 1989). ``L`` depends only on the fixed points, so it is inverted once,
    in float64 (it is ill-conditioned for larger grids); the zero right-hand rows drop out.
    """
    source = tps_control_points(grid_size).double()  # (K, 2)
    count = source.shape[0]
    affine = torch.cat([torch.ones(count, 1, dtype=torch.float64), source], dim=1)  # (K, 3)
    system = torch.zeros(count + 3, count + 3, dtype=torch.float64)
    system[:count, :count] = _tps_kernel(torch.cdist(source, source).pow(2))
    system[:count, count:] = affine
    system[count:, :count] = affine.T
    return torch.linalg.inv(system)[:, :count]


def _tps_weights(grid_size: int, points: Tensor) -> Tensor:
    """``(N, K)`` float64 ``Q``: the points mapped through the spline are ``Q @ targets``."""
    source = tps_control_points(grid_size).double()  # (K, 2)
    points = points.detach().double().cpu()  # (N, 2)
    query = torch.cat(
        [
            _tps_kernel(torch.cdist(points, source).pow(2)),  # (N, K)
            torch.ones(points.shape[0], 1, dtype=torch.float64),
            points,
        ],
        dim=1,
    )  # (N, K + 3)
    return query @ _tps_inverse(grid_size)  # (N, K)


@functools.lru_cache(maxsize=32)
def _tps_grid_weights(grid_size: int, height: int, width: int, align_corners: bool) -> Tensor:
    """``(h * w, K)`` float64 weights of the output pixel grid (the same every forward pass)."""
    identity = torch.eye(2, 3, dtype=torch.float64).unsqueeze(0)  # (1, 2, 3)
    base = F.affine_grid(identity, [1, 1, height, width], align_corners=align_corners)  # (1, h, w, 2)
    return _tps_weights(grid_size, base.view(-1, 2))


def _tps_grid_size(control: Tensor) -> int:
    grid_size = math.isqrt(control.shape[1])
    if control.dim() != 3 or control.shape[2] != 2 or grid_size < 2 or grid_size**2 != control.shape[1]:
        raise ValueError(
            f"control: expected shape (B, K, 2) with K = n * n, n >= 2, received {tuple(control.shape)}"
        )
    return grid_size


def tps_map(control: Tensor, points: Tensor) -> Tensor:
    """Map output-space points through a thin-plate spline.

    Written out because torch has none (kornia has one, but a whole dependency for what is a fixed
    linear operator once the control grid is fixed would be out of proportion).

    Args:
        control: ``(B, K, 2)`` input normalised coordinates of the fixed output control points
            (a :class:`ThinPlateSplineHead`'s ``theta``), ``K`` a square.
        points: ``(N, 2)`` output normalised ``(x, y)``.

    Returns:
        ``(B, N, 2)`` input normalised ``(x, y)``, differentiable in ``control``.
    """
    weights = _tps_weights(_tps_grid_size(control), points).to(device=control.device, dtype=control.dtype)
    return torch.einsum("nk,bkd->bnd", weights, control)  # (B, N, 2)


def _tps_grid(control: Tensor, size: tuple[int, int, int, int], align_corners: bool) -> Tensor:
    """Sampling grid of a thin-plate spline: ``(B, K, 2) -> (B, h, w, 2)`` input coordinates."""
    weights = _tps_grid_weights(_tps_grid_size(control), size[2], size[3], align_corners)  # (h*w, K)
    mapped = torch.einsum("nk,bkd->bnd", weights.to(device=control.device, dtype=control.dtype), control)
    return mapped.view(size[0], size[2], size[3], 2)  # (B, h*w, 2) -> (B, h, w, 2)


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
        theta: ``(B, 2, 3)`` affine, ``(B, 3, 3)`` projective or ``(B, K, 2)`` thin-plate spline
            control points (:func:`theta_kind`), mapping output to input normalised coordinates.
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
    kind = theta_kind(theta)
    if theta.shape[0] != batch:
        raise ValueError(f"theta: expected {batch} transforms (one per image), received {theta.shape[0]}")
    size = (batch, channels, int(output_size[0]), int(output_size[1]))
    with torch.autocast(device_type=images.device.type, enabled=False):
        theta32 = theta.float()
        if kind == "affine_theta":
            grid = F.affine_grid(theta32, list(size), align_corners=align_corners)  # (B, h, w, 2)
        elif kind == "projective_theta":
            grid = _projective_grid(theta32, size, align_corners)  # (B, h, w, 2)
        else:
            grid = _tps_grid(theta32, size, align_corners)  # (B, h, w, 2)
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
        refiner: an optional :class:`GlimpseRefiner` that corrects an affine ``theta`` from a
            glimpse around its region before the warp.
    """

    def __init__(
        self,
        *,
        localization: nn.Module,
        head: nn.Module,
        output_size: tuple[int, int],
        align_corners: bool = False,
        padding_mode: str = "border",
        refiner: nn.Module | None = None,
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
        self.refiner = refiner

    def localization_parameters(self) -> list[nn.Parameter]:
        """Parameters of the localisation net, head and refiner (train them with their own learning rate)."""
        refiner = [] if self.refiner is None else list(self.refiner.parameters())
        return [*self.localization.parameters(), *self.head.parameters(), *refiner]

    def forward(
        self, images: Tensor, *, with_class_logits: bool = False
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor | None]:
        """Warp ``images``.

        Args:
            images: ``(B, C, H, W)``.
            with_class_logits: also return the localisation's own class logits ``(B, K)``: a
                :class:`SoftArgmaxHead` with ``num_classes`` scores a map per class, which a
                label-only loss trains to light up where the object is (``None`` for other heads).

        Returns:
            ``(warped (B, C, h, w), theta (B, 2, 3) or (B, 3, 3))``, and the class logits with
            ``with_class_logits``.
        """
        if images.dim() != 4:
            raise ValueError(f"images: expected shape (B, C, H, W), received {tuple(images.shape)}")
        features = self.localization(images)
        class_logits = None
        if isinstance(self.head, SoftArgmaxHead) and self.head.num_classes:
            scores = self.head.scores(features)  # (B, K, h', w')
            theta = self.head(features, scores)
            class_logits = SoftArgmaxHead.class_logits(scores)  # (B, K)
        else:
            theta = self.head(features)
        if self.refiner is not None:
            theta = self.refiner(images, theta)
        warped = warp(
            images, theta, self.output_size, align_corners=self.align_corners, padding_mode=self.padding_mode
        )
        if is_recording():
            kind = theta_kind(theta)
            emit(
                self,
                theta,
                axes=("batch", "point", "coord") if kind == "tps_control" else ("batch", "row", "col"),
                kind=kind,
                input_hw=(images.shape[2], images.shape[3]),
                align_corners=self.align_corners,
            )
        return (warped, theta, class_logits) if with_class_logits else (warped, theta)


def conv_block(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """``kernel_size`` convolution (same padding, no bias), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_stages(
    in_channels: int, channels: tuple[int, ...], downsample: int = 1, *, pool_last: bool = True
) -> tuple[list[nn.Module], int]:
    """A max pool by ``downsample``, then per width a 5x5 :func:`conv_block` and a 2x2 max pool (the
    last one only with ``pool_last``); returns the layers and the last width. The small CNNs of
    localisation nets and of :class:`GlimpseRefiner` are built from these."""
    layers: list[nn.Module] = [nn.MaxPool2d(downsample)] if downsample > 1 else []
    previous = in_channels
    for index, width in enumerate(channels):
        layers.append(conv_block(previous, width, 5))
        if pool_last or index < len(channels) - 1:
            layers.append(nn.MaxPool2d(2))
        previous = width
    return layers, previous


class GlimpseRefiner(nn.Module):
    """A second look: correct an affine region from a glimpse of its surroundings.

    The localisation net predicts the region from a coarse view in which a cell sees about a
    digit's width, so the region's *size* is a guess from local appearance: it follows the
    training glyphs' sizes, not the glyph in front of it. The refiner samples a glimpse around the
    region (``context`` times its size, so the object's edges are in view), and a small CNN reads
    how far the object reaches and predicts a correction in the glimpse's own frame: log-scales
    ``(a, b)`` and a shift ``(u, v)``. The region ``A`` becomes ``A · C · D · C⁻¹`` with
    ``C = diag(context, context, 1)`` and ``D = [[e^a, 0, u], [0, e^b, v], [0, 0, 1]]``: for the
    attention transform ``[[sx, 0, tx], [0, sy, ty]]`` that is ``sx · e^a`` and
    ``tx + context · sx · u``. Iterative refinement of a transform from the image it samples is the
    inverse-compositional STN's idea (Lin and Lucey 2017); here one step, from a wider glimpse.

    Bounded and identity at init: ``a, b`` are ``log(max_zoom) · tanh(·)`` (the size changes at
    most by ``max_zoom``, so it cannot collapse), ``u, v`` are ``tanh(·)`` (at most one glimpse
    half-width), and the last layer starts at zero. The glimpse is sampled at a detached region:
    it is what the refiner observes, and the localisation net learns from the refined region's
    loss only through ``A`` itself.

    Args:
        in_channels: ``C`` of the images.
        context: glimpse side over the region's side.
        glimpse_size: side of the square glimpse in pixels.
        channels: widths of the two 5x5 conv stages (each followed by a 2x2 max pool).
        hidden_dim: width of the hidden layer.
        max_zoom: the largest factor by which one step may grow or shrink a side.
        align_corners: the sampler's convention (the transformer's).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        context: float = 1.5,
        glimpse_size: int = 24,
        channels: tuple[int, int] = (16, 32),
        hidden_dim: int = 64,
        max_zoom: float = 2.0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if context < 1 or max_zoom <= 1 or glimpse_size % 4:
            raise ValueError(
                f"refiner: expected context >= 1, max_zoom > 1 and glimpse_size a multiple of 4, "
                f"received {context}, {max_zoom}, {glimpse_size}"
            )
        self.context, self.glimpse_size, self.align_corners = context, glimpse_size, align_corners
        self.log_max_zoom = math.log(max_zoom)
        stages, previous = conv_stages(in_channels, tuple(channels))
        cells = (glimpse_size // 4) ** 2
        self.net = nn.Sequential(
            *stages, nn.Flatten(), nn.Linear(previous * cells, hidden_dim), nn.ReLU(inplace=True)
        )
        self.correction = nn.Linear(hidden_dim, 4)  # (a, b, u, v) before their bounds
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def forward(self, images: Tensor, theta: Tensor) -> Tensor:
        """``images (B, C, H, W)``, affine ``theta (B, 2, 3)`` -> the refined ``theta (B, 2, 3)``."""
        check_shape("theta", theta, (images.shape[0], 2, 3))
        theta = theta.float()
        linear, offset = theta[:, :, :2], theta[:, :, 2:]  # (B, 2, 2), (B, 2, 1)
        # the glimpse: the region widened by `context` about its centre, observed (detached)
        wide = torch.cat([linear * self.context, offset], dim=2).detach()
        glimpse = warp(
            images,
            wide,
            (self.glimpse_size, self.glimpse_size),
            align_corners=self.align_corners,
            padding_mode="zeros",
        )
        raw = self.correction(self.net(glimpse)).float()  # (B, 4)
        zoom = (self.log_max_zoom * torch.tanh(raw[:, :2])).exp()  # (B, 2): e^a, e^b
        shift = torch.tanh(raw[:, 2:]) * self.context  # (B, 2), in the region's own frame
        # A · C · D · C^-1: the columns of A's linear part scaled by (e^a, e^b), its offset moved
        # by A's linear part applied to the shift.
        return torch.cat([linear * zoom[:, None, :], offset + linear @ shift[:, :, None]], dim=2)


def theta_kind(theta: Tensor) -> str:
    """``"affine_theta"`` ``(B, 2, 3)``, ``"projective_theta"`` ``(B, 3, 3)`` or ``"tps_control"``
    ``(B, K, 2)`` (``K = n * n``, ``n >= 2``); ``ValueError`` for any other shape."""
    if theta.dim() == 3 and tuple(theta.shape[1:]) == (2, 3):
        return "affine_theta"
    if theta.dim() == 3 and tuple(theta.shape[1:]) == (3, 3):
        return "projective_theta"
    side = math.isqrt(theta.shape[1]) if theta.dim() == 3 else 0
    if theta.dim() == 3 and theta.shape[2] == 2 and side >= 2 and side * side == theta.shape[1]:
        return "tps_control"
    raise ValueError(
        f"theta: expected shape (B, 2, 3), (B, 3, 3) or (B, K, 2) with K = n * n, received {tuple(theta.shape)}"
    )


def map_output_points(theta: Tensor, points: Tensor) -> Tensor:
    """Where output-space points sample the input: ``(B, N, 2)`` normalised ``(x, y)``.

    Args:
        theta: any transform :func:`warp` accepts.
        points: ``(N, 2)`` output normalised ``(x, y)``.
    """
    kind = theta_kind(theta)
    theta = theta.float()
    points = points.to(device=theta.device, dtype=theta.dtype)
    if kind == "tps_control":
        return tps_map(theta, points)
    homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=1)  # (N, 3)
    mapped = torch.einsum("kj,bij->bki", homogeneous, theta)  # (B, N, 2 or 3)
    if kind == "projective_theta":
        mapped = mapped[..., :2] / _safe_denominator(mapped[..., 2:])  # (B, N, 2)
    return mapped


def _to_pixels(normalised: Tensor, input_hw: tuple[int, int], align_corners: bool) -> Tensor:
    height, width = int(input_hw[0]), int(input_hw[1])
    size = torch.tensor([width, height], dtype=normalised.dtype, device=normalised.device)  # (x, y) order
    if align_corners:
        return (normalised + 1.0) * (size - 1.0) / 2.0
    return ((normalised + 1.0) * size - 1.0) / 2.0


def theta_to_corners(theta: Tensor, input_hw: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Input pixel coordinates of the four output corners: the region the transformer sampled.

    Pixel coordinates put pixel ``i``'s centre at ``i`` (matplotlib's ``imshow`` convention).
    With ``align_corners=False`` normalised -1 and 1 are the outer pixel *edges*:
    ``x_pix = ((x + 1) * W - 1) / 2``; with ``True`` they are the outer pixel *centres*:
    ``x_pix = (x + 1) * (W - 1) / 2``. A thin-plate spline's region is curved: its corners are
    exact (they are control points), its outline is :func:`region_outline`.

    Args:
        theta: ``(B, 2, 3)`` affine, ``(B, 3, 3)`` projective or ``(B, K, 2)`` TPS control points.
        input_hw: ``(H, W)`` of the input image.
        align_corners: the convention the warp used.

    Returns:
        ``(B, 4, 2)`` float32 ``(x, y)`` in ``[-1, 1]`` input coordinates (outside when the region
        leaves the image), differentiable in ``theta``.
    """
    corners = torch.tensor(OUTPUT_CORNERS)  # (4, 2)
    return _to_pixels(map_output_points(theta, corners), input_hw, align_corners)


def region_outline(
    theta: Tensor, input_hw: tuple[int, int], *, align_corners: bool, points_per_side: int = 16
) -> Tensor:
    """The sampled region's boundary as a polygon in input pixels, clockwise from the top-left.

    Straight for affine and projective transforms (the corners suffice), curved for a thin-plate
    spline: each output edge is sampled at ``points_per_side`` points.

    Returns:
        ``(B, 4 * points_per_side, 2)`` float32 pixel ``(x, y)``.
    """
    steps = torch.linspace(-1.0, 1.0, points_per_side + 1)[:-1]  # each edge without its end corner
    ones = torch.ones_like(steps)
    edges = [
        torch.stack([steps, -ones], 1),  # top, left to right
        torch.stack([ones, steps], 1),  # right, top to bottom
        torch.stack([-steps, ones], 1),  # bottom, right to left
        torch.stack([-ones, -steps], 1),  # left, bottom to top
    ]
    return _to_pixels(map_output_points(theta, torch.cat(edges)), input_hw, align_corners)


def region_grid_lines(
    theta: Tensor, input_hw: tuple[int, int], *, align_corners: bool, lines: int = 5, points: int = 17
) -> Tensor:
    """The output's grid lines mapped into the input (the warped grid a TPS region is drawn as).

    Returns:
        ``(B, 2 * lines, points, 2)`` float32 pixel ``(x, y)``: ``lines`` rows (constant output y)
        then ``lines`` columns (constant output x), each a polyline of ``points`` points.
    """
    levels, steps = torch.linspace(-1.0, 1.0, lines), torch.linspace(-1.0, 1.0, points)
    level_grid, step_grid = torch.meshgrid(levels, steps, indexing="ij")  # (lines, points)
    rows = torch.stack([step_grid, level_grid], -1)  # (lines, points, 2): y fixed
    cols = torch.stack([level_grid, step_grid], -1)  # (lines, points, 2): x fixed
    query = torch.cat([rows, cols]).reshape(-1, 2)  # (2 * lines * points, 2)
    mapped = _to_pixels(map_output_points(theta, query), input_hw, align_corners)
    return mapped.view(theta.shape[0], 2 * lines, points, 2)


def output_corners(theta: Tensor) -> Tensor:
    """Normalised input ``(x, y)`` of the four output corners (-1,-1), (1,-1), (1,1), (-1,1):
    ``(B, 4, 2)`` float32, differentiable in ``theta`` (what :func:`theta_to_corners` turns into pixels)."""
    return map_output_points(theta, torch.tensor(OUTPUT_CORNERS))


def pixels_to_normalized(points: Tensor, input_hw: tuple[int, int], *, align_corners: bool) -> Tensor:
    """Pixel ``(..., 2)`` ``(x, y)`` -> normalised coordinates: the inverse of :func:`theta_to_corners`' mapping."""
    height, width = int(input_hw[0]), int(input_hw[1])
    size = torch.tensor([width, height], dtype=points.dtype, device=points.device)  # (x, y) order
    if align_corners:
        return points * 2.0 / (size - 1.0) - 1.0
    return (points * 2.0 + 1.0) / size - 1.0


def region_iou(corners: Tensor, boxes: Tensor, *, exact: bool = False) -> Tensor:
    """IoU of each sampled region with a ground-truth box.

    By default the region is the axis-aligned bounding box of its corners: exact for scale +
    translate transforms (their regions are axis-aligned rectangles), the enclosing rectangle of
    the sampled parallelogram for rotations and shears. ``exact=True`` intersects the quadrilateral
    (or any simple polygon, e.g. a TPS :func:`region_outline`) itself with the box. Written out
    (Sutherland-Hodgman clipping by the box's four half-planes, shoelace areas) because
    torchvision.ops has no polygon IoU, and clipping by a convex box is exact for a simple polygon
    (a concave one may leave zero-area slivers along the box, which add no area), so a geometry
    library would add a dependency and no precision; a Python loop over the batch, for evaluation,
    not differentiable.

    Args:
        corners: ``(B, 4, 2)`` pixel ``(x, y)`` from :func:`theta_to_corners`; with ``exact``,
            ``(B, N, 2)`` polygon vertices in order.
        boxes: ``(B, 4)`` pixel ``(x0, y0, x1, y1)`` in the same coordinates.
        exact: polygon IoU instead of bounding-box IoU.

    Returns:
        ``(B,)`` float32 IoU in ``[0, 1]`` (0 when both regions are empty).
    """
    check_shape("corners", corners, (None, None if exact else 4, 2))
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
