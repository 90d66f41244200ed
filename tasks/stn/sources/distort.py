"""The spatial transformer paper's distorted and cluttered digits, generated in batches.

Jaderberg et al. 2015, section 4.1: MNIST distorted by rotation (R), rotation + scale +
translation into a larger canvas (RTS), a projective warp (P) and elastic warping (E), and
"cluttered MNIST": a digit at a random place in a 60x60 canvas with 6x6 fragments of other digits
as distractors. Every sample is one bilinear ``grid_sample`` of its 28x28 source glyph, with the
per-sample sampling grids built for a whole chunk at once, so 50k images take seconds.

Each sample keeps its digit's true box, measured on the warped digit alone (before clutter), in
the pixel coordinates of :func:`multiattn.stn.theta_to_corners`: pixel ``i``'s centre is at
``i``, so a box spanning ink columns ``c0..c1`` is ``(c0 - 0.5, c1 + 0.5)``.

Shape legend: ``N`` samples in a chunk, ``G`` source glyphs, ``C`` canvas side, ``K`` clutter
pieces per sample, ``P`` piece side.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

__all__ = [
    "VARIANTS",
    "STYLE_FIELDS",
    "DistortionSpec",
    "DistortedDigits",
    "distort_digits",
    "ink_boxes",
    "broad_spec",
    "varied_spec",
    "variety_spec",
]

VARIANTS = ("plain", "R", "RTS", "P", "E", "cluttered")
STYLE_FIELDS = (
    "aspect_range",
    "shear",
    "stroke_range",
    "blur_range",
    "noise_range",
    "contrast_range",
    "background_range",
    "invert_probability",
)
_GLYPH = 28
_INK_THRESHOLD = 0.3


@dataclass(frozen=True)
class DistortionSpec:
    """How one variant distorts a digit (defaults follow the paper's section 4.1).

    Attributes:
        variant: one of :data:`VARIANTS`.
        canvas_size: output side; ``None`` picks the paper's (28, RTS 42, cluttered 60).
        rotation: maximum absolute rotation in degrees; ``None`` picks the variant's
            (R 90, RTS 45, cluttered 0).
        scale_range: digit scale range (RTS 0.7-1.2, P 0.75-1.0, cluttered 0.8-1.2).
        clutter_pieces: (min, max) number of distractor fragments (cluttered only).
        clutter_size: side of a distractor fragment in pixels.
        projective_noise: std of the corner perturbation in normalised units (P).
        elastic_alpha: displacement strength (E), Simard's alpha: the smoothed field is scaled to
            an RMS displacement of ``2 * alpha / 34`` pixels (2 px at Simard's 34).
        elastic_sigma: Gaussian smoothing of the displacement field in pixels (E).

    Style variety (neutral by default; :func:`broad_spec` and :func:`varied_spec` set them for the
    broad and varied digit sets):
        aspect_range: width / height stretch, drawn log-uniformly (similarity variants: RTS,
            cluttered, R, plain).
        shear: maximum absolute horizontal shear (slant), same variants.
        stroke_range: stroke width change in source-glyph pixels, uniform: negative erodes
            (thinner), positive dilates (bolder), fractions blend neighbouring 3x3 steps.
        blur_range: Gaussian blur sigma in canvas pixels, uniform.
        noise_range: std of additive Gaussian pixel noise, uniform.
        contrast_range: ink intensity, uniform (1 = full white).
        background_range: background level, uniform (0 = black); the ink always stays brighter.
        invert_probability: share of images inverted (dark digit on light ground).
    """

    variant: str = "cluttered"
    canvas_size: int | None = None
    rotation: float | None = None
    scale_range: tuple[float, float] | None = None
    clutter_pieces: tuple[int, int] = (4, 6)
    clutter_size: int = 6
    projective_noise: float = 0.1
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0
    aspect_range: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    stroke_range: tuple[float, float] = (0.0, 0.0)
    blur_range: tuple[float, float] = (0.0, 0.0)
    noise_range: tuple[float, float] = (0.0, 0.0)
    contrast_range: tuple[float, float] = (1.0, 1.0)
    background_range: tuple[float, float] = (0.0, 0.0)
    invert_probability: float = 0.0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; valid variants: {', '.join(VARIANTS)}")
        low, high = self.clutter_pieces
        if not 0 <= low <= high:
            raise ValueError(f"clutter_pieces: expected 0 <= min <= max, received {self.clutter_pieces}")
        ranges = {
            "aspect_range": (self.aspect_range, 0.1, 10.0),
            "stroke_range": (self.stroke_range, -1.0, 2.0),
            "blur_range": (self.blur_range, 0.0, 5.0),
            "noise_range": (self.noise_range, 0.0, 1.0),
            "contrast_range": (self.contrast_range, 0.05, 1.0),
            "background_range": (self.background_range, 0.0, 0.9),
        }
        for name, ((lo, hi), smallest, largest) in ranges.items():
            if not smallest <= lo <= hi <= largest:
                raise ValueError(
                    f"{name}: expected {smallest} <= min <= max <= {largest}, received ({lo}, {hi})"
                )
        if self.background_range[1] >= self.contrast_range[0]:
            raise ValueError(
                f"background_range {self.background_range} must stay below contrast_range {self.contrast_range}"
            )
        if not 0.0 <= self.invert_probability <= 1.0 or not 0.0 <= self.shear <= 1.0:
            raise ValueError(
                f"invert_probability and shear: expected values in [0, 1], received "
                f"{self.invert_probability}, {self.shear}"
            )

    def neutral_style(self) -> dict[str, object]:
        """The style-variety fields left at their neutral defaults (omitted from cache keys, so
        caches made before these fields existed stay valid)."""
        defaults = DistortionSpec()
        return {
            name: getattr(self, name)
            for name in STYLE_FIELDS
            if getattr(self, name) == getattr(defaults, name)
        }

    @property
    def canvas(self) -> int:
        if self.canvas_size is not None:
            return int(self.canvas_size)
        return {"RTS": 42, "cluttered": 60}.get(self.variant, _GLYPH)

    @property
    def max_rotation(self) -> float:
        if self.rotation is not None:
            return float(self.rotation)
        return {"R": 90.0, "RTS": 45.0}.get(self.variant, 0.0)

    @property
    def scales(self) -> tuple[float, float]:
        if self.scale_range is not None:
            return (float(self.scale_range[0]), float(self.scale_range[1]))
        return {"RTS": (0.7, 1.2), "P": (0.75, 1.0), "cluttered": (0.8, 1.2)}.get(self.variant, (1.0, 1.0))


@dataclass(frozen=True)
class DistortedDigits:
    """Generated samples.

    Attributes:
        images: ``(M, C, C)`` uint8, light digit on dark.
        labels: ``(M,)`` int64.
        boxes: ``(M, 4)`` float32 ``(x0, y0, x1, y1)`` of the digit's ink.
        sources: ``(M,)`` int64 index of the source glyph each sample was made from.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    sources: np.ndarray


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _similarity_theta(
    angle: Tensor, scale: Tensor, centre: Tensor, canvas: int, stretch: Tensor | None = None
) -> Tensor:
    """``affine_grid`` theta placing the 28x28 glyph, rotated and scaled, centred at ``centre``.

    The glyph's pixel ``q`` (continuous, 0..28) lands at canvas pixel ``centre + s R (q - 14)``.
    Inverting: input normalised ``= R^-1 (x - centre) / (14 s)`` with ``x = (u + 1) C / 2``.

    Args:
        angle: ``(N,)`` radians; scale: ``(N,)``; centre: ``(N, 2)`` canvas pixels (x, y).
        stretch: ``(N, 2, 2)`` extra linear map applied to the glyph before rotating (aspect and
            shear), or ``None``.

    Returns:
        ``(N, 2, 3)``.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    inverse_rotation = torch.stack(
        [torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1
    )  # (N, 2, 2)
    if stretch is not None:
        inverse_rotation = torch.linalg.inv(stretch) @ inverse_rotation  # (N, 2, 2): (R S)^-1 = S^-1 R^-1
    half = _GLYPH / 2.0
    linear = inverse_rotation * (canvas / 2.0) / (half * scale)[:, None, None]  # (N, 2, 2)
    shift = torch.einsum("nij,nj->ni", inverse_rotation, canvas / 2.0 - centre) / (half * scale)[:, None]
    return torch.cat([linear, shift[:, :, None]], dim=2)  # (N, 2, 3)


def _homography_grid(generator: torch.Generator, n: int, spec: DistortionSpec) -> Tensor:
    """Sampling grid of a random projective warp: ``(N, C, C, 2)``.

    The glyph's corners move to ``s * corner + noise`` in the output; the grid needs the inverse
    map (output -> input), the homography sending those points back to the corners.
    """
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])  # (4, 2)
    scale = _uniform(generator, n, *spec.scales)
    moved = scale[:, None, None] * corners + spec.projective_noise * torch.randn(n, 4, 2, generator=generator)
    # Direct linear transform: 8 equations for h11..h32 (h33 = 1), per sample.
    x, y = moved[..., 0], moved[..., 1]  # (N, 4) output points
    u, v = corners[:, 0].expand(n, 4), corners[:, 1].expand(n, 4)  # (N, 4) input points
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)  # (N, 4, 8)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)  # (N, 4, 8)
    system = torch.cat([rows_u, rows_v], dim=1).double()  # (N, 8, 8)
    target = torch.cat([u, v], dim=1).double()  # (N, 8)
    params = torch.linalg.solve(system, target).float()  # (N, 8)
    homography = torch.cat([params, torch.ones(n, 1)], 1).view(n, 3, 3)  # (N, 9) -> (N, 3, 3)
    canvas = spec.canvas
    identity = torch.eye(2, 3).expand(n, 2, 3)
    base = F.affine_grid(identity, [n, 1, canvas, canvas], align_corners=False)  # (N, C, C, 2)
    homogeneous = torch.cat([base, torch.ones_like(base[..., :1])], -1)  # (N, C, C, 3)
    mapped = torch.einsum("nhwj,nij->nhwi", homogeneous, homography)  # (N, C, C, 3)
    return mapped[..., :2] / mapped[..., 2:].clamp(min=1e-3)


def _elastic_grid(generator: torch.Generator, n: int, spec: DistortionSpec) -> Tensor:
    """Identity grid plus a smoothed random displacement field (Simard et al. 2003): ``(N, C, C, 2)``."""
    canvas = spec.canvas
    field = torch.rand(n, 2, canvas, canvas, generator=generator) * 2.0 - 1.0  # (N, 2, C, C)
    radius = int(math.ceil(3 * spec.elastic_sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / spec.elastic_sigma) ** 2)
    kernel = kernel / kernel.sum()
    # Separable blur: rows then columns, each channel (dx, dy) on its own.
    field = F.conv2d(
        F.pad(field, (radius, radius, 0, 0), mode="reflect"),
        kernel.view(1, 1, 1, -1).repeat(2, 1, 1, 1),
        groups=2,
    )
    field = F.conv2d(
        F.pad(field, (0, 0, radius, radius), mode="reflect"),
        kernel.view(1, 1, -1, 1).repeat(2, 1, 1, 1),
        groups=2,
    )
    # Normalise to unit RMS, so the displacement size depends on alpha only, not on sigma.
    field = field / field.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=1e-8)
    displacement = (
        field.permute(0, 2, 3, 1) * (spec.elastic_alpha / 34.0) * 2.0 * (2.0 / canvas)
    )  # (N, C, C, 2)
    identity = torch.eye(2, 3).expand(n, 2, 3)
    base = F.affine_grid(identity, [n, 1, canvas, canvas], align_corners=False)  # (N, C, C, 2)
    return base + displacement


def _sampling_grid(generator: torch.Generator, n: int, spec: DistortionSpec) -> Tensor:
    """Per-sample grids mapping canvas pixels into the 28x28 glyph: ``(N, C, C, 2)``."""
    canvas = spec.canvas
    if spec.variant == "P":
        return _homography_grid(generator, n, spec)
    if spec.variant == "E":
        return _elastic_grid(generator, n, spec)
    max_angle = math.radians(spec.max_rotation)
    angle = _uniform(generator, n, -max_angle, max_angle)
    scale = _uniform(generator, n, *spec.scales)
    if spec.variant in ("RTS", "cluttered"):
        # Keep the glyph's 28x28 frame inside the canvas where it fits, so the ink is never cut.
        margin = torch.minimum(_GLYPH / 2.0 * scale, torch.full_like(scale, canvas / 2.0))
        centre = torch.stack([_uniform(generator, n, 0, 1), _uniform(generator, n, 0, 1)], -1)  # (N, 2)
        centre = margin[:, None] + centre * (canvas - 2 * margin)[:, None]
    else:
        centre = torch.full((n, 2), canvas / 2.0)
    stretch = None
    if spec.aspect_range != (1.0, 1.0) or spec.shear > 0:
        # Drawn only when asked for, so specs without them keep their random stream (and bytes).
        low, high = math.log(spec.aspect_range[0]), math.log(spec.aspect_range[1])
        aspect = torch.exp(_uniform(generator, n, low, high)).sqrt()  # (N,)
        shear = _uniform(generator, n, -spec.shear, spec.shear)  # (N,)
        stretch = torch.zeros(n, 2, 2)
        stretch[:, 0, 0], stretch[:, 0, 1], stretch[:, 1, 1] = aspect, shear / aspect, 1.0 / aspect
    theta = _similarity_theta(angle, scale, centre, canvas, stretch)
    return F.affine_grid(theta, [n, 1, canvas, canvas], align_corners=False)  # (N, C, C, 2)


def ink_boxes(images: Tensor, threshold: float = _INK_THRESHOLD) -> Tensor:
    """Bounding boxes of the ink of each image.

    Args:
        images: ``(N, H, W)`` float in [0, 1].
        threshold: intensity above which a pixel is ink.

    Returns:
        ``(N, 4)`` float32 ``(x0, y0, x1, y1)`` with pixel centres at integers (outer pixel edges,
        ``c0 - 0.5`` .. ``c1 + 0.5``); an image without ink gets the whole canvas.
    """
    ink = images > threshold  # (N, H, W)
    height, width = images.shape[1], images.shape[2]
    cols, rows = ink.any(dim=1), ink.any(dim=2)  # (N, W), (N, H)
    empty = ~cols.any(dim=1)

    def first_last(mask: Tensor, size: int) -> tuple[Tensor, Tensor]:
        first = mask.float().argmax(dim=1)
        last = size - 1 - mask.flip(1).float().argmax(dim=1)
        return first.float(), last.float()

    x0, x1 = first_last(cols, width)
    y0, y1 = first_last(rows, height)
    boxes = torch.stack([x0 - 0.5, y0 - 0.5, x1 + 0.5, y1 + 0.5], dim=1)
    whole = torch.tensor([-0.5, -0.5, width - 0.5, height - 0.5])
    return torch.where(empty[:, None], whole, boxes)


def _add_clutter(
    generator: torch.Generator, canvas: Tensor, glyphs: Tensor, sources: Tensor, spec: DistortionSpec
) -> Tensor:
    """Max-composite ``K`` fragments cut from *other* glyphs at random places: ``(N, C, C)``."""
    n, side = canvas.shape[0], canvas.shape[1]
    count, piece = len(glyphs), spec.clutter_size
    low, high = spec.clutter_pieces
    if high == 0 or count < 2:
        return canvas
    pieces = high
    used = torch.randint(low, high + 1, (n,), generator=generator)  # (N,)
    active = torch.arange(pieces)[None, :] < used[:, None]  # (N, K)
    # A different glyph: shift the own index by 1..G-1.
    other = (sources[:, None] + torch.randint(1, count, (n, pieces), generator=generator)) % count  # (N, K)
    # Cut from the glyph's central 20x20, where the strokes are, so fragments carry ink.
    lo, hi = 4, _GLYPH - 4 - piece
    cut_y = torch.randint(lo, hi + 1, (n, pieces), generator=generator)
    cut_x = torch.randint(lo, hi + 1, (n, pieces), generator=generator)
    steps = torch.arange(piece)
    rows = cut_y[..., None, None] + steps[:, None]  # (N, K, P, 1)
    cols = cut_x[..., None, None] + steps[None, :]  # (N, K, 1, P)
    fragments = glyphs[other[..., None, None], rows, cols]  # (N, K, P, P)
    fragments = fragments * active[..., None, None]
    put_y = torch.randint(0, side - piece + 1, (n, pieces), generator=generator)
    put_x = torch.randint(0, side - piece + 1, (n, pieces), generator=generator)
    flat = (put_y[..., None, None] + steps[:, None]) * side + (
        put_x[..., None, None] + steps[None, :]
    )  # (N, K, P, P)
    out = canvas.reshape(n, side * side)  # (N, C*C)
    out = out.scatter_reduce(1, flat.reshape(n, -1), fragments.reshape(n, -1), reduce="amax")
    return out.view(n, side, side)  # (N, C*C) -> (N, C, C)


def _dilate(images: Tensor) -> Tensor:
    return F.max_pool2d(images[:, None], 3, stride=1, padding=1)[:, 0]  # (N, H, W)


def _erode(images: Tensor) -> Tensor:
    return -F.max_pool2d(-images[:, None], 3, stride=1, padding=1)[:, 0]  # (N, H, W)


def _vary_stroke(generator: torch.Generator, glyphs: Tensor, spec: DistortionSpec) -> Tensor:
    """Thinner or bolder strokes: grey-level erosion / dilation by 3x3 steps, blended for
    fractional amounts: amount -1 = eroded once, 0 = as drawn, 1 = dilated once, 2 = twice."""
    amount = _uniform(generator, len(glyphs), *spec.stroke_range)  # (N,)
    steps = torch.stack(
        [_erode(glyphs), glyphs, _dilate(glyphs), _dilate(_dilate(glyphs))], 1
    )  # (N, 4, H, W)
    position = (amount + 1.0).clamp(0.0, 3.0)  # index into steps
    low = position.floor().long().clamp(max=2)  # (N,)
    frac = (position - low)[:, None, None]  # (N, 1, 1)
    rows = torch.arange(len(glyphs))
    return steps[rows, low] * (1.0 - frac) + steps[rows, low + 1] * frac


def _blur(generator: torch.Generator, images: Tensor, spec: DistortionSpec) -> Tensor:
    """Per-image Gaussian blur with sigma drawn from ``blur_range`` (separable, grouped conv)."""
    n = len(images)
    sigma = _uniform(generator, n, *spec.blur_range).clamp(min=1e-3)  # (N,)
    radius = max(1, int(math.ceil(3 * spec.blur_range[1])))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)  # (N, 2r+1)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    out = F.conv2d(
        F.pad(images[None], (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=n
    )
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=n)
    return out[0]  # (1, N, H, W) -> (N, H, W)


def _restyle(generator: torch.Generator, images: Tensor, spec: DistortionSpec) -> Tensor:
    """Contrast, background, blur, noise and inversion of finished canvases ``(N, C, C)`` in [0, 1].

    Each is drawn only when its range is not neutral, so a spec without them keeps its bytes.
    """
    n = len(images)
    if spec.contrast_range != (1.0, 1.0) or spec.background_range != (0.0, 0.0):
        ink = _uniform(generator, n, *spec.contrast_range)[:, None, None]
        ground = _uniform(generator, n, *spec.background_range)[:, None, None]
        images = ground + (ink - ground) * images
    if spec.blur_range != (0.0, 0.0):
        images = _blur(generator, images, spec)
    if spec.noise_range != (0.0, 0.0):
        std = _uniform(generator, n, *spec.noise_range)[:, None, None]
        images = images + std * torch.randn(images.shape, generator=generator)
    if spec.invert_probability > 0:
        flip = (torch.rand(n, generator=generator) < spec.invert_probability)[:, None, None]
        images = torch.where(flip, 1.0 - images, images)
    return images.clamp(0.0, 1.0)


def _styled(
    spec: DistortionSpec,
    *,
    rotation: float,
    scale_range: tuple[float, float],
    clutter_widening: tuple[int, int],
    **styles: Any,
) -> DistortionSpec:
    """``spec`` with ``styles``, ``rotation`` and ``scale_range`` where ``spec`` leaves them to the
    variant (cluttered and RTS), and its clutter range widened by ``clutter_widening`` pieces
    (below, above)."""
    placed = spec.variant in ("RTS", "cluttered")
    low, high = spec.clutter_pieces
    return dataclasses.replace(
        spec,
        rotation=spec.rotation if spec.rotation is not None or not placed else rotation,
        scale_range=spec.scale_range if spec.scale_range is not None or not placed else scale_range,
        clutter_pieces=(max(0, low - clutter_widening[0]), high + clutter_widening[1]),
        **styles,
    )


def broad_spec(spec: DistortionSpec) -> DistortionSpec:
    """The broad digit set's distortion: ``spec`` with wide style variety (stroke, aspect, slant,
    blur, noise, contrast, background, inversion), rotation ±15° and scale 0.7-1.35 where ``spec``
    leaves them to the variant (cluttered and RTS), and the clutter range widened by 2 pieces
    below and 4 above (4-6 -> 2-10)."""
    return _styled(
        spec,
        rotation=15.0,
        scale_range=(0.7, 1.35),
        clutter_widening=(2, 4),
        aspect_range=(0.75, 1.33),
        shear=0.25,
        stroke_range=(-0.5, 1.2),
        blur_range=(0.0, 0.8),
        noise_range=(0.0, 0.05),
        contrast_range=(0.6, 1.0),
        background_range=(0.0, 0.2),
        invert_probability=0.1,
    )


def varied_spec(spec: DistortionSpec) -> DistortionSpec:
    """The varied digit set's distortion: the broad set's grounds (contrast, background, noise)
    with half its shape styles (aspect, slant, stroke, blur, rotation), no inversion, and the
    clutter range widened by 1 piece below and 2 above (4-6 -> 3-8): a set between the standard
    digits and the broad ones. Its scale spread, 0.6-1.5 where the variant leaves it (ink about
    12-32 px tall on the 60x60 canvas), is the widest of the three: with less spread the label-only
    region keeps nearly one size whatever the digit's (docs/stn.md "Digits of every size")."""
    return _styled(
        spec,
        rotation=7.5,
        scale_range=(0.6, 1.5),
        clutter_widening=(1, 2),
        aspect_range=(0.87, 1.15),
        shear=0.125,
        stroke_range=(-0.25, 0.6),
        blur_range=(0.0, 0.4),
        noise_range=(0.0, 0.05),
        contrast_range=(0.6, 1.0),
        background_range=(0.0, 0.2),
    )


def variety_spec(spec: DistortionSpec, variety: str) -> DistortionSpec:
    """``spec`` styled for a digit variety: ``standard`` as is, ``varied`` by :func:`varied_spec`,
    ``broad`` by :func:`broad_spec`."""
    styles = {"standard": lambda s: s, "varied": varied_spec, "broad": broad_spec}
    if variety not in styles:
        raise ValueError(f"unknown variety {variety!r}; valid varieties: {', '.join(styles)}")
    return styles[variety](spec)


def distort_digits(
    glyphs: np.ndarray,
    labels: np.ndarray,
    spec: DistortionSpec,
    *,
    num_samples: int,
    seed: int,
    chunk_size: int = 4096,
    progress: bool = True,
    description: str | None = None,
    one_per_source: bool = False,
) -> DistortedDigits:
    """Generate ``num_samples`` distorted (or cluttered) digits from source glyphs.

    Each sample draws a source glyph uniformly, a random distortion of ``spec``, and for the
    cluttered variant its distractor fragments from the *same* glyph pool (so a split's clutter
    never comes from another split's sources). Deterministic for a given ``seed`` and
    ``chunk_size``.

    Args:
        glyphs: ``(G, 28, 28)`` uint8 source digits.
        labels: ``(G,)`` their labels.
        spec: the distortion.
        num_samples: ``M``.
        seed: random seed.
        chunk_size: samples warped together (memory vs speed).
        progress: show a tqdm bar.
        description: the bar's label.
        one_per_source: distort every glyph exactly once, in order (``num_samples`` must equal
            ``G``), the way the paper distorts each MNIST image once; otherwise draw sources
            uniformly with replacement.

    Returns:
        :class:`DistortedDigits` with ``(M, C, C)`` images.
    """
    if glyphs.ndim != 3 or glyphs.shape[1:] != (_GLYPH, _GLYPH):
        raise ValueError(f"glyphs: expected shape (G, 28, 28), received {tuple(glyphs.shape)}")
    if len(glyphs) == 0:
        raise ValueError("glyphs: no source glyphs to distort")
    if one_per_source and num_samples != len(glyphs):
        raise ValueError(
            f"one_per_source: num_samples must equal the {len(glyphs)} glyphs, received {num_samples}"
        )
    generator = torch.Generator().manual_seed(int(seed))
    source = torch.from_numpy(np.ascontiguousarray(glyphs)).float() / 255.0  # (G, 28, 28)
    canvas = spec.canvas
    images = np.empty((num_samples, canvas, canvas), dtype=np.uint8)
    boxes = np.empty((num_samples, 4), dtype=np.float32)
    sources = np.empty(num_samples, dtype=np.int64)
    bar = tqdm(total=num_samples, desc=description or f"stn {spec.variant}", unit="img", disable=not progress)
    for start in range(0, num_samples, chunk_size):
        n = min(chunk_size, num_samples - start)
        if one_per_source:
            index = torch.arange(start, start + n)  # (N,)
        else:
            index = torch.randint(0, len(source), (n,), generator=generator)  # (N,)
        grid = _sampling_grid(generator, n, spec)  # (N, C, C, 2)
        glyph = source[index]  # (N, 28, 28)
        if spec.stroke_range != (0.0, 0.0):
            glyph = _vary_stroke(generator, glyph, spec)
        digit = F.grid_sample(
            glyph[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        digit = digit[:, 0].clamp(0.0, 1.0)  # (N, 1, C, C) -> (N, C, C)
        boxes[start : start + n] = ink_boxes(digit).numpy()
        if spec.variant == "cluttered":
            digit = _add_clutter(generator, digit, source, index, spec)
        digit = _restyle(generator, digit, spec)
        images[start : start + n] = (digit * 255.0).round().to(torch.uint8).numpy()
        sources[start : start + n] = index.numpy()
        bar.update(n)
    bar.close()
    return DistortedDigits(
        images=images, labels=np.asarray(labels, dtype=np.int64)[sources], boxes=boxes, sources=sources
    )
