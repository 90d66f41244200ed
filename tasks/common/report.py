"""What the report adapters share: the section request, data from a checkpoint, PNG / WAV writers.

Every task's report adapter (the ``report`` piece of its :class:`multiattn.registry.Task`) receives
a :class:`SectionRequest` and returns its section of the explorer (``multiattn.explorer``). This
module sits below the tasks (it imports none), so the adapters and the report builder
(``tasks/report.py``) both import it without a cycle.

Shape legend: ``H, W`` image size, ``C`` channels.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiattn.io import UserError, atomic_path

__all__ = [
    "SectionRequest",
    "build_from",
    "datamodule_from_checkpoint",
    "setup_datamodule",
    "display_scale",
    "to_picture",
    "write_png",
    "write_wav",
]

# Small inputs (8x8 .. 96x96 digits and scenes) are scaled up by an integer factor to at least this
# many pixels on their long side, so the page shows them at a readable size; big user images are
# scaled down to at most MAX_DISPLAY.
MIN_DISPLAY = 160
MAX_DISPLAY = 320


@dataclass
class SectionRequest:
    """What one task adapter must build.

    Attributes:
        ckpt: the checkpoint file.
        checkpoint: its loaded contents (``multiattn.checkpoint.load_checkpoint``).
        out_dir: the report folder.
        assets: ``out_dir/assets/<section id>``: where the adapter writes its PNG / WAV files.
        inputs: user files for this section (``None`` in split mode).
        split: ``test``, ``val`` or ``train`` (split mode).
        limit: examples of the split.
        data_dir: replaces the data folder recorded in the checkpoint (``None`` = keep it).
        device: where the model runs.
        batch_size: examples per forward pass.
        errors: the adapter appends ``(file, message)`` for every input it skipped.
        label: names the section on its progress bar (e.g. ``s0-stn``).
        quiet: no progress bar (``--quiet``); the bar is also off when stderr is not a terminal.
    """

    ckpt: Path
    checkpoint: dict[str, Any]
    out_dir: Path
    assets: Path
    inputs: list[Path] | None
    split: str
    limit: int
    data_dir: Path | None
    device: Any
    batch_size: int
    errors: list[tuple[str, str]] = field(default_factory=list)
    label: str = ""
    quiet: bool = True

    def progress(
        self, iterable: Iterable[Any], total: int, *, size: Callable[[Any], int] | None = None
    ) -> Iterator[Any]:
        """``iterable`` with a progress bar of ``total`` examples on stderr (``multiattn.apps.progress``).

        Every adapter wraps the loop it already runs over examples (or batches: ``size(item)`` says
        how many examples an item holds) in this, so every section shows the same bar. An item
        counts as done when the adapter asks for the next one.
        """
        from multiattn.apps import progress

        bar = progress(None, total, quiet=self.quiet, desc=self.label, unit="example")
        try:
            for item in iterable:
                yield item
                bar.update(1 if size is None else size(item))
        finally:
            bar.close()

    def relative(self, path: Path) -> str:
        """``path`` relative to the report folder, with ``/`` (what the page references)."""
        return path.relative_to(self.out_dir).as_posix()


SectionHalf = Callable[[SectionRequest, Any], tuple[list[dict[str, Any]], dict[str, Any], str]]


def build_from(
    request: SectionRequest, system: Any, split: SectionHalf, inputs: SectionHalf
) -> dict[str, Any]:
    """A section from an adapter's two halves: ``split`` (``--split``) or ``inputs`` (``--inputs``).

    Each half takes ``(request, system)`` and returns ``(items, metrics, data description)``; the
    report builder adds the section's ``task`` and ``title``.
    """
    items, metrics, data = (split if request.inputs is None else inputs)(request, system)
    return {"data": data, "metrics": metrics, "items": items}


# ---- checkpoints and data ---------------------------------------------------------------------
def datamodule_from_checkpoint(
    checkpoint: dict[str, Any], package: str, default_cls: type, data_dir: Path | None
) -> tuple[Any, str]:
    """Rebuild the datamodule a checkpoint was trained with (its stored hyper-parameters).

    Only a class inside the task's own package is imported; anything else, or no stored
    hyper-parameters, falls back to ``default_cls`` with its defaults (the embedded data under
    ``data/<task>``).

    Args:
        checkpoint: the loaded checkpoint.
        package: the task's package (an adapter passes its ``__package__``).
        default_cls: the task's embedded-data datamodule class.
        data_dir: replaces the stored ``data_dir`` (``--data-dir D`` gives ``D/<task>``).

    Returns:
        ``(datamodule, description)`` where the description names the class and its data folder.
    """
    stored = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    class_path = str(stored.get("_class_path") or "")
    cls = default_cls
    kwargs: dict[str, Any] = {}
    if class_path.startswith(f"{package}.") and class_path.count(".") >= 2:
        module, _, name = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
            kwargs = {k: v for k, v in stored.items() if not k.startswith("_")}
        except (ImportError, AttributeError):
            cls, kwargs = default_cls, {}
    if data_dir is not None:
        if "data_dir" not in kwargs and cls is not default_cls:
            raise UserError(f"--data-dir: the checkpoint's data ({class_path}) has no data_dir to replace")
        kwargs["data_dir"] = str(data_dir)
    for key in ("progress",):  # quiet generation inside the report command when the class allows it
        if key in kwargs:
            kwargs[key] = False
    try:
        datamodule = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"cannot rebuild the checkpoint's data module {cls.__name__}: {err}") from None
    where = kwargs.get("data_dir") or getattr(datamodule, "data_dir", None) or "?"
    return datamodule, f"{cls.__name__} ({where})"


def setup_datamodule(datamodule: Any, where: str, ckpt: Path) -> None:
    """``datamodule.setup("test")``; unreadable data becomes one line naming the checkpoint."""
    try:
        datamodule.setup("test")
    except (OSError, ValueError) as err:
        raise UserError(f"{ckpt}: cannot load the checkpoint's data {where}: {err}") from None


# ---- assets -----------------------------------------------------------------------------------
def display_scale(width: int, height: int) -> float:
    """Factor that brings an image to a readable size on the page (integer when enlarging)."""
    side = max(width, height)
    if side < MIN_DISPLAY:
        return float(math.ceil(MIN_DISPLAY / side))
    if side > MAX_DISPLAY:
        return MAX_DISPLAY / side
    return 1.0


def to_picture(array: Any) -> np.ndarray:
    """``(C, H, W)`` / ``(H, W, C)`` / ``(H, W)`` (C = 1 or 3) -> ``(H, W)`` or ``(H, W, 3)``."""
    picture = np.asarray(array)
    if picture.ndim == 3 and picture.shape[0] in (1, 3) and picture.shape[2] not in (1, 3):
        picture = picture.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if picture.ndim == 3 and picture.shape[2] == 1:
        picture = picture[:, :, 0]  # (H, W, 1) -> (H, W)
    return picture


def write_png(array: Any, path: Path, *, scale: float = 1.0) -> tuple[int, int]:
    """Write ``array`` (uint8, or float in [0, 1]; any layout :func:`to_picture` takes) as PNG.

    Enlarging uses nearest neighbour (the pixels stay the pixels the model saw); shrinking uses
    bilinear. Returns the written ``(width, height)``.
    """
    from PIL import Image

    picture = to_picture(array)
    if picture.dtype != np.uint8:
        picture = (np.clip(picture.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(picture))
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return image.width, image.height


def write_wav(waveform: np.ndarray, sample_rate: int, path: Path) -> None:
    """Write a mono float waveform in [-1, 1] as 16-bit PCM WAV (every browser plays it)."""
    import soundfile

    with atomic_path(path) as tmp:
        soundfile.write(
            str(tmp), np.asarray(waveform, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV"
        )
