"""Property: the image and audio readers give a result or one ``UserError`` line, never another
exception, and never write a file (random bytes, and random valid files of random modes, sizes, rates)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from multiattn.imageio import read_image
from multiattn.io import UserError
from multiattn.tasks.asr.audio import load_audio
from multiattn.tasks.captioning.images import load_image
from multiattn.tasks.stn.sources.images import prepare_image
from multiattn.tasks.stn.sources.images import read_image as stn_read_image

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
IMAGE_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK")
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


def _read_all_images(path: Path) -> None:
    read_image(path, 16)
    load_image(path, 16)
    image = stn_read_image(path, (12, 12))
    tensor, _ = prepare_image(image, channels=1, size=(12, 12), light_on_dark=True)
    assert tensor.shape == (1, 12, 12) and bool(tensor.isfinite().all())


def _outcome(read, path: Path) -> None:
    """``read(path)`` either succeeds or raises one ``UserError`` line naming ``path``; nothing is written."""
    before = sorted(path.parent.rglob("*"))
    try:
        read(path)
    except UserError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
    assert sorted(path.parent.rglob("*")) == before


@SETTINGS
@given(
    data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif", ".wav", ".flac"])
)
def test_random_bytes(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        path.write_bytes(data)
        _outcome(_read_all_images, path)
        _outcome(load_audio, path)


@contextlib.contextmanager
def _written(data: bytes, suffix: str, cut: float | None) -> Iterator[Path]:
    """``data`` (its first ``cut`` share, when given: a truncated file) in a temporary ``x<suffix>``."""
    if cut is not None:
        data = data[: max(1, int(len(data) * cut))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        path.write_bytes(data)
        yield path


@SETTINGS
@given(
    mode=st.sampled_from(IMAGE_MODES),
    format=st.sampled_from(sorted(IMAGE_FORMATS)),
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    cut=st.none() | st.floats(0.1, 0.95),
)
def test_random_valid_and_truncated_images(mode, format, width, height, seed, cut):
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    try:
        image = rgb.convert(mode) if mode not in ("I;16", "I", "F") else rgb.convert("L").convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, format=format)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode
    with _written(buffer.getvalue(), IMAGE_FORMATS[format], cut) as path:
        if cut is None:
            _read_all_images(path)  # a valid file always reads
        else:
            _outcome(_read_all_images, path)


@SETTINGS
@given(
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    channels=st.integers(1, 2),
    frames=st.integers(0, 4000),
    subtype_format=st.sampled_from(
        [("PCM_16", "WAV"), ("FLOAT", "WAV"), ("PCM_24", "FLAC"), ("VORBIS", "OGG")]
    ),
    seed=st.integers(0, 2**16),
    cut=st.none() | st.floats(0.1, 0.95),
)
def test_random_audio_files(rate, channels, frames, subtype_format, seed, cut):
    subtype, format = subtype_format
    rng = np.random.default_rng(seed)
    wave = (rng.standard_normal((frames, channels)) * 0.1).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, rate, subtype=subtype, format=format)
    with _written(buffer.getvalue(), f".{format.lower()}", cut) as path:
        _outcome(load_audio, path)


@pytest.mark.parametrize("mode", IMAGE_MODES)
def test_every_mode_reads_as_the_models_input(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (500, 700, 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode not in ("I;16", "I", "F") else rgb.convert("L").convert(mode)
    image.save(tmp_path / "x.tif")
    _read_all_images(tmp_path / "x.tif")  # large enough to be reduced while decoding
