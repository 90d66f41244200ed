"""User images of any mode and size become the model's input; non-images fail in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from multiattn.io import UserError
from multiattn.tasks.stn.sources.images import image_to_array, prepare_image, read_image


def _digit(size: int = 40) -> np.ndarray:
    """A bright bar on dark, off-centre, as uint8."""
    image = np.zeros((size, size), np.uint8)
    image[8:30, 20:26] = 255
    return image


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "I", "F", "1", "LA", "CMYK"])
def test_modes_convert_to_unit_range(tmp_path, mode):
    gray = Image.fromarray(_digit())
    if mode == "I;16":
        image = Image.fromarray(_digit().astype(np.uint16) * 257)  # Pillow picks mode I;16
    elif mode == "I":
        image = Image.fromarray(_digit().astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(_digit().astype(np.float32) / 255.0)
    else:
        image = gray.convert(mode)
    suffix = ".tif" if mode in ("I", "F", "CMYK") else ".png"
    path = tmp_path / f"x_{mode.replace(';', '')}{suffix}"
    image.save(path)
    tensor, letterbox = prepare_image(read_image(path), channels=1, size=(28, 28), light_on_dark=True)
    assert tensor.shape == (1, 28, 28) and tensor.dtype == torch.float32
    assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    assert float(tensor.max()) > 0.6, mode  # the bar survives every conversion (16-bit scaled by 65535)
    assert float(tensor[0, 0, 0]) < 0.1  # background stays dark
    assert (letterbox.height, letterbox.width) == (40, 40)
    rgb, _ = prepare_image(read_image(path), channels=3, size=(32, 32), light_on_dark=False)
    assert rgb.shape == (3, 32, 32)


def test_transparent_png_composited_over_white_then_inverted(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 8:12] = (0, 0, 0, 255)  # black ink on a transparent sheet
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    array = image_to_array(read_image(tmp_path / "t.png"), channels=1)
    assert array[0, 0, 0] == pytest.approx(1.0) and array[10, 10, 0] == pytest.approx(0.0)
    tensor, _ = prepare_image(read_image(tmp_path / "t.png"), channels=1, size=(20, 20), light_on_dark=True)
    assert float(tensor[0, 0, 0]) < 0.05 and float(tensor[0, 10, 10]) > 0.9


def test_dark_on_light_inverted_only_when_asked(tmp_path):
    Image.fromarray(255 - _digit()).save(tmp_path / "paper.png")
    image = read_image(tmp_path / "paper.png")
    auto, _ = prepare_image(image, channels=1, size=(40, 40), light_on_dark=True)
    kept, _ = prepare_image(image, channels=1, size=(40, 40), light_on_dark=False)
    forced, _ = prepare_image(image, channels=1, size=(40, 40), light_on_dark=False, invert=True)
    assert float(auto[0, 0, 0]) < 0.05 and float(kept[0, 0, 0]) > 0.95
    assert torch.allclose(auto, forced)


def test_letterbox_maps_back_to_user_pixels(tmp_path):
    # A 30 x 90 (h x w) image: padded to 90 x 90, resized to 45 x 45 (factor 2).
    array = np.zeros((30, 90), np.uint8)
    array[10, 60] = 255
    Image.fromarray(array).save(tmp_path / "wide.png")
    tensor, letterbox = prepare_image(
        read_image(tmp_path / "wide.png"), channels=1, size=(45, 45), light_on_dark=True
    )
    assert (letterbox.side, letterbox.top, letterbox.left) == (90, 30, 0)
    # The centre of user pixel (60, 10) is square pixel (60, 40), i.e. model coordinate (29.75, 19.75).
    mapped = letterbox.to_original(torch.tensor([[29.75, 19.75], [-0.5, -0.5]]))
    assert torch.allclose(mapped, torch.tensor([[60.0, 10.0], [-0.5, -30.5]]), atol=1e-5)
    y, x = divmod(int(tensor[0].argmax()), 45)
    assert (x, y) == (30, 20)


def test_non_images_fail_in_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    for path, message in (
        (bad, "not a readable image"),
        (tmp_path / "missing.png", "no such file"),
        (tmp_path, "directory"),
    ):
        with pytest.raises(UserError) as info:
            read_image(path)
        text = str(info.value)
        assert str(path) in text and message in text and "\n" not in text
    truncated = tmp_path / "cut.png"
    Image.fromarray(_digit(64)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(UserError, match="cut.png"):
        read_image(truncated)
