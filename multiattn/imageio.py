"""Reading image files for a model: upright, reduced while decoding, one line per bad file.

:func:`read_image` is the one place image files are decoded (the tasks' datasets, apps and the
report all call it), so every image:

- is turned upright from its EXIF orientation tag (``PIL.ImageOps.exif_transpose``): a phone photo
  taken in portrait reaches the model as the user sees it;
- is reduced while decoding to what the model needs: with ``target_size`` given, a JPEG is decoded
  at 1/2, 1/4 or 1/8 scale (``Image.draft``, the decoder's DCT scaling) and any image is then
  shrunk by an integer box filter (``Image.reduce``), keeping at least twice the target on each
  side so the caller's own anti-aliased resize sees the same picture. Memory then stays bounded
  by the model's input size for JPEG; other formats hold one decoded copy of the file (Pillow
  decodes them whole), never the float copies made later;
- over Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` times two, the level at which
  Pillow refuses), or unreadable for any reason, becomes one :class:`~multiattn.io.UserError` line
  naming the file, so a batch goes on with the next one.

``image.info[ORIGINAL_SIZE]`` holds the upright image's ``(width, height)`` in the file and
``image.info[SCALE]`` the file's pixels per decoded pixel (an integer: pixel ``i`` of the decoded
image covers the file's pixels ``[i * SCALE, (i + 1) * SCALE)``), so coordinates can be mapped back
to the user's pixels.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from multiattn.io import UserError

__all__ = ["ORIGINAL_SIZE", "SCALE", "read_image", "reduction_factor"]

ORIGINAL_SIZE = "multiattn.original_size"
SCALE = "multiattn.scale"
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
# Modes Image.reduce does not take, and the mode each is reduced in (what later conversions give).
_REDUCE_AS = {
    "1": lambda image: "L",
    "P": lambda image: "RGBA" if "transparency" in image.info else "RGB",
    "PA": lambda image: "RGBA",
}


def reduction_factor(size: tuple[int, int], target_size: tuple[int, int]) -> int:
    """Largest integer factor that keeps ``size`` at least twice ``target_size`` on both sides."""
    return max(1, min(size[0] // (2 * max(1, target_size[0])), size[1] // (2 * max(1, target_size[1]))))


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    width, height = size
    return (int(width), int(height))


def read_image(path: str | os.PathLike, target_size: int | tuple[int, int] | None = None) -> Image.Image:
    """Decode an image file upright, reduced towards ``target_size``.

    Args:
        path: the file.
        target_size: ``(width, height)`` (or one side of a square) the caller will resize the image
            to; the decoded image keeps at least twice that on each side (or its own size when
            smaller). ``None`` decodes the full image.

    Returns:
        A loaded Pillow image (any mode, detached from the file), with ``info[ORIGINAL_SIZE]`` and
        ``info[SCALE]``.

    Raises:
        UserError: one line naming the file: missing, a folder, not an image, damaged, or over the
            decompression-bomb limit.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an image")
    target = None if target_size is None else _pair(target_size)
    try:
        with warnings.catch_warnings():
            # Between one and two times the limit Pillow only warns; memory is bounded here instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                orientation = image.getexif().get(0x0112, 1)
                width, height = image.size  # from the header, before any draft scaling
                original = (height, width) if orientation in _ROTATED else (width, height)
                if target is not None and image.format == "JPEG":
                    wanted = tuple(2 * side for side in target)
                    if orientation in _ROTATED:
                        wanted = wanted[::-1]
                    image.draft(image.mode, wanted)  # decode at 1/2, 1/4 or 1/8 scale when that fits
                image.load()
                draft_scale = max(1, round(width / image.size[0]))  # 1, 2, 4 or 8
                ImageOps.exif_transpose(image, in_place=True)  # no second full-size copy
                upright, factor = _reduce(image, target)
                if upright is image:
                    upright = image.copy()  # detached from the file, which closes here
    except Image.DecompressionBombError as err:
        raise UserError(f"{path}: image too large to decode safely ({err})") from None
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as err:  # Pillow's decoders raise many types on damaged files
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UserError(f"{path}: not a readable image ({reason})") from None
    upright.info[ORIGINAL_SIZE] = original
    upright.info[SCALE] = draft_scale * factor
    return upright


def _reduce(image: Image.Image, target: tuple[int, int] | None) -> tuple[Image.Image, int]:
    """``(image box-reduced towards target, factor)``; ``(image, 1)`` itself when nothing is reduced."""
    factor = 1 if target is None else reduction_factor(image.size, target)
    if factor == 1 or image.mode.startswith("I;16"):  # no box filter for 16-bit modes
        return image, 1
    if image.mode in _REDUCE_AS:
        image = image.convert(_REDUCE_AS[image.mode](image))
    return image.reduce(factor), factor
