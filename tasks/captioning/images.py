"""Image reading and normalisation shared by the datasets and the ``caption`` app.

Every image becomes a square ``(3, S, S)`` float tensor normalised with the ImageNet mean and
standard deviation (what timm backbones expect; the scratch CNN does not mind). The same
function serves training and the app, so a checkpoint sees at prediction time exactly what it saw
in training.

Shape legend: ``S`` image side, ``Hi, Wi`` original image size.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from multiattn.imageio import read_image

__all__ = [
    "MEAN",
    "STD",
    "array_to_tensor",
    "load_image",
    "image_to_input",
    "denormalize",
    "IMAGE_EXTENSIONS",
]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def array_to_tensor(image: np.ndarray) -> Tensor:
    """uint8 ``(S, S, 3)`` -> normalised float ``(3, S, S)``."""
    tensor = (
        torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
    )  # (3, S, S)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (tensor - mean) / std


def load_image(path: str | os.PathLike, image_size: int) -> tuple[Tensor, np.ndarray]:
    """Read ``path`` upright as RGB (:func:`multiattn.imageio.read_image`), resize it to ``image_size``
    square (bilinear).

    Returns:
        ``(tensor (3, S, S) normalised, resized uint8 array (S, S, 3))`` — the array is what
        overlays are drawn on.

    Raises:
        UserError: one line naming the file and what is wrong, when it is missing, not a readable
            image or too large.
    """
    return image_to_input(read_image(path, image_size), image_size)


def image_to_input(img: Image.Image, image_size: int) -> tuple[Tensor, np.ndarray]:
    """A Pillow image of any mode -> ``(tensor (3, S, S) normalised, uint8 array (S, S, 3))``."""
    img = img.convert("RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)  # (S, S, 3)
    return array_to_tensor(array), array


def denormalize(images: Tensor) -> Tensor:
    """Normalised ``(..., 3, S, S)`` -> uint8 ``(..., S, S, 3)`` for drawing."""
    mean = torch.tensor(MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(3, 1, 1)
    pixels = ((images.float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.movedim(-3, -1)  # (..., 3, S, S) -> (..., S, S, 3)
