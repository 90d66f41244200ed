"""``multiattn.imageio.read_image`` and the task readers built on it: upright, reduced, one line per bad file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from multiattn.imageio import ORIGINAL_SIZE, SCALE, read_image
from multiattn.io import UserError
from multiattn.tasks.captioning.images import load_image
from multiattn.tasks.stn.sources.images import prepare_image
from multiattn.tasks.stn.sources.images import read_image as stn_read_image

# EXIF orientation -> the transpose that makes the stored pixels upright.
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _scene(width: int = 64, height: int = 40) -> Image.Image:
    """An asymmetric picture: red top-left block, blue bottom stripe, a gradient."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    array[: height // 3, : width // 4, 0] = 255
    array[-height // 5 :, :, 2] = 255
    return Image.fromarray(array)


def _stored_with_orientation(upright: Image.Image, orientation: int, path, format: str = "PNG") -> None:
    """Save the pixels a camera would store for ``upright`` under EXIF ``orientation``."""
    inverse = {6: 8, 8: 6}.get(orientation, orientation)  # the other transposes are their own inverse
    stored = upright.transpose(ORIENTATIONS[inverse])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format=format, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied_by_every_reader(tmp_path, orientation):
    upright = _scene()
    (tmp_path / "upright.png").parent.mkdir(exist_ok=True)
    upright.save(tmp_path / "upright.png")
    _stored_with_orientation(upright, orientation, tmp_path / "phone.png")
    assert Image.open(tmp_path / "phone.png").size != upright.size or orientation in (2, 3, 4)
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "phone.png")), np.asarray(upright))
    # the captioning reader (datasets and the caption app) and the classifier's (datasets, classify)
    tensor_a, _ = load_image(tmp_path / "phone.png", 32)
    tensor_b, _ = load_image(tmp_path / "upright.png", 32)
    torch.testing.assert_close(tensor_a, tensor_b, rtol=0, atol=0)
    size = (28, 28)
    a, _ = prepare_image(
        stn_read_image(tmp_path / "phone.png", size), channels=3, size=size, light_on_dark=False
    )
    b, _ = prepare_image(
        stn_read_image(tmp_path / "upright.png", size), channels=3, size=size, light_on_dark=False
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_exif_orientation_of_a_jpeg_with_draft_reduction(tmp_path):
    upright = _scene(1600, 1000)
    _stored_with_orientation(upright, 6, tmp_path / "phone.jpg", format="JPEG")
    image = read_image(tmp_path / "phone.jpg", 96)
    assert image.info[ORIGINAL_SIZE] == (1600, 1000)
    assert image.width / image.height == pytest.approx(1.6, rel=0.02)
    assert image.info[SCALE] > 1 and min(image.size) >= 2 * 96
    red = np.asarray(image.convert("RGB"))[..., 0] > 128
    assert red[: red.shape[0] // 4, : red.shape[1] // 5].mean() > 0.9  # the red block is top-left


@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_large_images_are_reduced_while_decoding_and_look_the_same(tmp_path, format):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    big = Image.fromarray(base).resize((2400, 1800), Image.BILINEAR)  # smooth content
    big.save(tmp_path / f"big.{format.lower()}", format=format, quality=95, compress_level=1)
    path = tmp_path / f"big.{format.lower()}"
    image = read_image(path, 96)
    assert image.info[ORIGINAL_SIZE] == (2400, 1800)
    assert 2 * 96 <= min(image.size) and max(image.size) <= 4 * 2 * 96 * 2400 // 1800  # bounded by the target
    assert image.info[SCALE] * image.width >= 2400 > image.info[SCALE] * (image.width - 1)
    # The model's input is the same as from the full decode (up to the JPEG decoder's own scaling).
    reduced, _ = load_image(path, 96)
    with Image.open(path) as full:
        reference = np.asarray(full.convert("RGB").resize((96, 96), Image.BILINEAR), dtype=np.float32)
    _, picture = load_image(path, 96)
    assert np.abs(picture.astype(np.float32) - reference).mean() < 3.0
    assert reduced.shape == (3, 96, 96)


def test_letterbox_corners_map_to_the_files_pixels_after_reduction(tmp_path):
    _scene(3000, 2000).save(tmp_path / "big.png")
    _scene(3000, 2000).save(tmp_path / "big.bmp")
    size = (60, 60)
    reduced = stn_read_image(tmp_path / "big.png", size)
    full = stn_read_image(tmp_path / "big.bmp")
    assert reduced.info[SCALE] > 1 and full.info[SCALE] == 1
    _, box_reduced = prepare_image(reduced, channels=1, size=size, light_on_dark=False)
    _, box_full = prepare_image(full, channels=1, size=size, light_on_dark=False)
    corners = torch.tensor([[0.0, 0.0], [59.0, 0.0], [59.0, 59.0], [0.0, 59.0], [30.0, 20.0]])
    torch.testing.assert_close(
        box_reduced.to_original(corners), box_full.to_original(corners), rtol=0, atol=box_reduced.scale
    )


def test_over_the_bomb_limit_is_one_line_and_the_batch_goes_on(tmp_path, monkeypatch):
    _scene(64, 40).save(tmp_path / "good.png")
    _scene(400, 300).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # huge.png: 120000 pixels > 2 x limit
    with pytest.raises(UserError) as info:
        read_image(tmp_path / "huge.png", 32)
    assert str(info.value).startswith(f"{tmp_path / 'huge.png'}: ") and "\n" not in str(info.value)
    with pytest.raises(UserError):
        load_image(tmp_path / "huge.png", 32)
    with pytest.raises(UserError):
        stn_read_image(tmp_path / "huge.png", (28, 28))
    assert load_image(tmp_path / "good.png", 32)[0].shape == (3, 32, 32)


def test_caption_app_reports_a_too_large_image_and_captions_the_rest(tmp_path, monkeypatch):
    """Captioning batches: the bad file's record carries an error, the good one a caption."""
    from multiattn.tasks.captioning.datasets import ImageCaptionDataset

    _scene(64, 40).save(tmp_path / "good.png")
    _scene(400, 300).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)

    class Record:
        def __init__(self, path):
            self.image_path, self.references, self.image_id = str(path), ["a b"], path.name

    class Vocab:
        def encode(self, text, max_len):
            return [1, 2]

    dataset = ImageCaptionDataset(
        [Record(tmp_path / "huge.png"), Record(tmp_path / "good.png")], Vocab(), image_size=32
    )
    with pytest.warns(UserWarning, match="huge.png"):
        assert dataset[0] is None
    assert dataset[1].image.shape == (3, 32, 32)


@pytest.mark.parametrize(
    "data", [b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a" + b"\xff" * 20, b"not an image"]
)
def test_garbage_is_one_line(tmp_path, data):
    (tmp_path / "x.png").write_bytes(data)
    with pytest.raises(UserError) as info:
        read_image(tmp_path / "x.png", 32)
    assert str(info.value).startswith(f"{tmp_path / 'x.png'}: ") and "\n" not in str(info.value)
