"""Turning any image file into the model's input, and mapping pixels back.

Users pass grayscale, RGB, RGBA, palette and 16-bit images of any size; training data from
ImageFolder trees goes through the same code, so an image is converted exactly as in training:

1. decode with :func:`multiattn.imageio.read_image` (upright from the EXIF orientation, reduced
   while decoding to twice the model's input; a file that is not an image, or too large, -> one-line
   :class:`~multiattn.io.UserError` naming it);
2. to float in [0, 1]: 16-bit and 32-bit integer modes are scaled by their range, palette
   images are expanded, transparency is composited over white;
3. to the model's channels (luminance for 1, RGB for 3);
4. for models trained MNIST-style (light digit on a dark background), an image whose border is
   bright (dark ink on paper) is inverted;
5. letterboxed to a square (aspect kept, padded with the background) and resized to the model's
   input size with anti-aliasing.

:class:`Letterbox` records steps 5's geometry so the sampled region's corners can be reported in
the user's own pixel coordinates.

Shape legend: ``C`` channels, ``H, W`` model input size, ``h, w`` the file's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from multiattn import imageio

__all__ = ["IMAGE_EXTENSIONS", "Letterbox", "read_image", "image_to_array", "prepare_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")


@dataclass(frozen=True)
class Letterbox:
    """Geometry of letterboxing an ``h x w`` image into a square and resizing it.

    Pixel coordinates put pixel ``i``'s centre at ``i`` (as :func:`multiattn.stn.theta_to_corners`).

    Attributes:
        height, width: the decoded image's size (the file's, reduced by ``scale``).
        side: the square's side before resizing (``max(h, w)``).
        left, top: padding added on the left / top.
        output_size: ``(H, W)`` after resizing.
        scale: the file's pixels per decoded pixel (``read_image`` reduces large files).
    """

    height: int
    width: int
    side: int
    left: int
    top: int
    output_size: tuple[int, int]
    scale: float = 1.0

    def to_decoded(self, points: Tensor) -> Tensor:
        """Map ``(..., 2)`` pixel ``(x, y)`` of the model input to the decoded image's pixels."""
        scale = torch.tensor(
            [self.side / self.output_size[1], self.side / self.output_size[0]], dtype=points.dtype
        )
        offset = torch.tensor([self.left, self.top], dtype=points.dtype)
        # Pixel edges scale, centres do not: shift by half a pixel around the resize.
        return (points + 0.5) * scale - 0.5 - offset

    def to_original(self, points: Tensor) -> Tensor:
        """Map ``(..., 2)`` pixel ``(x, y)`` of the model input to the user's file's pixels."""
        return (self.to_decoded(points) + 0.5) * self.scale - 0.5


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image upright, reduced towards the model's ``(H, W)`` ``size`` (``None``: full size).

    Both sides stay at least twice the model's larger side (or the file's own size), so the
    anti-aliased resize after letterboxing sees the same picture. Raises a one-line ``UserError``
    naming the file (:func:`multiattn.imageio.read_image`).
    """
    return imageio.read_image(path, None if size is None else max(int(size[0]), int(size[1])))


def image_to_array(image: Image.Image, *, channels: int) -> np.ndarray:
    """Any Pillow image -> ``(h, w, C)`` float32 in [0, 1].

    Args:
        image: a decoded Pillow image of any mode.
        channels: 1 (luminance) or 3 (RGB).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, received {channels}")
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            high = 1.0 if values.max(initial=0.0) <= 1.0 else float(values.max())
        elif mode.startswith("I;16") or values.max(initial=0.0) > 255:
            high = 65535.0
        else:
            high = 255.0
        gray = np.clip(values / high, 0.0, 1.0).astype(np.float32)  # (h, w)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0  # (h, w, 4)
            alpha = rgba[..., 3:]
            rgb = rgba[..., :3] * alpha + (1.0 - alpha)  # composited over white
        else:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (h, w, 3)
    if channels == 3:
        return np.ascontiguousarray(rgb, dtype=np.float32)
    luminance = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
    return luminance[..., None].astype(np.float32)  # (h, w, 1)


def prepare_image(
    image: Image.Image,
    *,
    channels: int,
    size: tuple[int, int],
    light_on_dark: bool,
    invert: bool | None = None,
) -> tuple[Tensor, Letterbox]:
    """Convert a Pillow image to the model's input.

    Args:
        image: any mode, any size.
        channels: the model's input channels.
        size: the model's ``(H, W)``.
        light_on_dark: the model was trained on light strokes over a dark background (MNIST);
            images with a bright border are inverted to match.
        invert: force (``True``) or forbid (``False``) the inversion; ``None`` decides as above.

    Returns:
        ``(image (C, H, W) float32 in [0, 1], letterbox geometry)``.
    """
    array = image_to_array(image, channels=channels)  # (h, w, C)
    height, width = array.shape[:2]
    if invert is None and light_on_dark:
        border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])  # (2h + 2w, C)
        invert = float(border.mean()) > 0.5
    if invert:
        array = 1.0 - array
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    # Pad with the background: the border's median colour after any inversion.
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    background = np.median(border, axis=0).astype(np.float32)  # (C,)
    square = np.empty((side, side, array.shape[2]), dtype=np.float32)
    square[:] = background
    square[top : top + height, left : left + width] = array
    tensor = torch.from_numpy(square).permute(2, 0, 1)[None]  # (side, side, C) -> (1, C, side, side)
    resized = F.interpolate(tensor, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    letterbox = Letterbox(
        height=height,
        width=width,
        side=side,
        left=left,
        top=top,
        output_size=tuple(size),
        scale=float(image.info.get(imageio.SCALE, 1)),
    )
    return resized[0].clamp(0.0, 1.0), letterbox
