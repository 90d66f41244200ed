"""``multiattn report``: the HTML attention explorer for one or more checkpoints.

    multiattn report --ckpt C [--ckpt C2 ...] (--inputs FILE... | --split test --limit N) --out DIR
                     [--data-dir D] [--device auto] [--batch-size 16] [--title T]

Each checkpoint becomes one section of the report written by :func:`multiattn.explorer.write_report`
(``DIR/index.html`` with ``explorer.js``, ``explorer.css``, ``data.js`` and ``DIR/assets/``; no
server, no network). The task of a checkpoint is read from ``hyper_parameters["_class_path"]``
(written by LightningCLI: ``tasks.<task>.system.<Class>``), or else found by trying each task's
system class. Each task's adapter (``tasks/<task>/report.py``, ``build_section(request)``) runs the
model and writes the assets:

- ``--split test --limit N``: the first ``N`` examples of the split of the data the checkpoint was
  trained on (the datamodule's hyper-parameters travel in a LightningCLI checkpoint; the embedded
  default is regenerated from its seed when missing), with references / true labels / boxes / word
  times, per-example scores and the section's corpus metrics;
- ``--inputs FILE...``: the user's files (images go to the classifier and captioning sections,
  audio to speech sections); a file that cannot be read is reported on stderr as one line and
  skipped.

``--data-dir D`` puts every task's data under ``D/<task>`` instead of the folder recorded in the
checkpoint. Exit status: 0, 1 when some input file was skipped, 2 on a user error (one line).

Shape legend: ``H, W`` image size, ``C`` channels (assets only; the adapters hold the tensors).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiattn.apps import resolve_device
from multiattn.io import UserError, atomic_path, staging_folder, swap_folders

__all__ = [
    "TASKS",
    "SectionRequest",
    "detect_task",
    "datamodule_from_checkpoint",
    "to_picture",
    "write_png",
    "write_wav",
    "display_scale",
    "build_parser",
    "build_report",
    "main",
]

# Task name -> (system module, system class, human title of its section).
TASKS: dict[str, tuple[str, str, str]] = {
    "stn": ("tasks.stn.system", "STNSystem", "classifier"),
    "captioning": ("tasks.captioning.system", "CaptioningSystem", "captioning"),
    "asr": ("tasks.asr.system", "ASRSystem", "speech"),
}
SPLITS = ("test", "val", "train")
# Small inputs (8x8 .. 96x96 digits and scenes) are scaled up by an integer factor to at least this
# many pixels on their long side, so the page shows them at a readable size; big user images are
# scaled down to at most MAX_DISPLAY.
MIN_DISPLAY = 160
MAX_DISPLAY = 320
# What a report folder holds, and how its data.js starts (tells an earlier report from other files).
REPORT_ENTRIES = ("index.html", "data.js", "explorer.js", "explorer.css", "assets")
REPORT_MARKER = "window.MULTIATTN_REPORT"


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

    def relative(self, path: Path) -> str:
        """``path`` relative to the report folder, with ``/`` (what the page references)."""
        return path.relative_to(self.out_dir).as_posix()


# ---- checkpoints and data ---------------------------------------------------------------------
def _system_class(task: str) -> type:
    module, name, _ = TASKS[task]
    return getattr(importlib.import_module(module), name)


def detect_task(ckpt: Path, checkpoint: dict[str, Any]) -> str:
    """The task of a checkpoint: from its ``_class_path``, else the first system class it loads into."""
    class_path = str((checkpoint.get("hyper_parameters") or {}).get("_class_path") or "")
    for task in TASKS:
        if class_path.startswith(f"tasks.{task}."):
            return task
    if class_path:
        raise UserError(f"{ckpt}: checkpoint of {class_path}, not of a multiattn task ({', '.join(TASKS)})")
    from multiattn.checkpoint import load_system

    for task in TASKS:
        try:
            load_system(_system_class(task), ckpt)
        except (UserError, TypeError, ValueError, KeyError, RuntimeError):
            continue
        return task
    raise UserError(f"{ckpt}: checkpoint of no known task (tried {', '.join(TASKS)})")


def datamodule_from_checkpoint(
    checkpoint: dict[str, Any], task: str, default_cls: type, data_dir: Path | None
) -> tuple[Any, str]:
    """Rebuild the datamodule a checkpoint was trained with (its stored hyper-parameters).

    Only a class of the checkpoint's own task package is imported (``tasks.<task>.*``); anything
    else, or no stored hyper-parameters, falls back to ``default_cls`` with its defaults (the
    embedded data under ``data/<task>``).

    Args:
        checkpoint: the loaded checkpoint.
        task: its task.
        default_cls: the task's embedded-data datamodule class.
        data_dir: replaces the stored ``data_dir`` (``--data-dir D`` gives ``D/<task>``).

    Returns:
        ``(datamodule, description)`` where the description names the class and its data folder.
    """
    stored = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    class_path = str(stored.get("_class_path") or "")
    cls = default_cls
    kwargs: dict[str, Any] = {}
    if class_path.startswith(f"tasks.{task}.") and class_path.count(".") >= 2:
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


# ---- the command ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiattn report",
        description="Write the HTML attention explorer (a static folder, no server) for one or more "
        "checkpoints of the captioning, classifier and speech tasks.",
    )
    parser.add_argument(
        "--ckpt", action="append", required=True, help="a checkpoint written by `multiattn fit` (repeatable)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--inputs",
        nargs="+",
        help="image / audio files or folders (images: classifier and captioning; audio: speech)",
    )
    source.add_argument("--split", choices=SPLITS, help="examples of the checkpoint's own data split")
    parser.add_argument("--limit", type=int, default=48, help="examples taken from --split (default 48)")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="report folder (index.html and assets); an earlier report there is replaced whole",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out that is not a report: replaces its index.html, data.js, "
        "explorer.js, explorer.css and assets/, keeps everything else",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data root: each task's data under DATA_DIR/<task>"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, ..."
    )
    parser.add_argument("--batch-size", type=int, default=16, help="examples per forward pass (default 16)")
    parser.add_argument("--title", default="multiattn attention explorer", help="page title")
    return parser


def _inputs_for(task: str, files: list[Path]) -> list[Path]:
    from multiattn.apps import expand_inputs

    if task == "asr":
        from tasks.asr.app import AUDIO_EXTENSIONS as extensions
    elif task == "stn":
        from tasks.stn.sources.images import IMAGE_EXTENSIONS as extensions
    else:
        from tasks.captioning.images import IMAGE_EXTENSIONS as extensions
    wanted = {e.lower() for e in extensions}
    return [f for f in expand_inputs(files, wanted) if f.suffix.lower() in wanted or not f.exists()]


def _adapter(task: str) -> Callable[[SectionRequest], dict[str, Any]]:
    return importlib.import_module(f"tasks.{task}.report").build_section


def build_report(args: argparse.Namespace, log: Callable[[str], None] = lambda _: None) -> tuple[Path, list]:
    """Build every section and write the report; returns ``(index.html, skipped input errors)``."""
    from multiattn.checkpoint import load_checkpoint
    from multiattn.explorer import write_report

    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: expected at least 1")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: expected at least 1")
    device = resolve_device(args.device)
    out_dir = Path(args.out)
    replace_whole = check_out_folder(out_dir, force=getattr(args, "force", False))
    loaded = []
    for ckpt in map(Path, args.ckpt):
        try:
            checkpoint = load_checkpoint(ckpt)
        except UserError:
            raise
        except Exception as err:
            raise UserError(f"{ckpt}: not a readable checkpoint ({type(err).__name__}: {err})") from None
        loaded.append((ckpt, checkpoint, detect_task(ckpt, checkpoint)))
    files = [Path(f) for f in args.inputs] if args.inputs else None
    if files is not None:
        claimed: set[Path] = set()
        for _, _, task in loaded:
            claimed.update(p for p in _inputs_for(task, files))
        unclaimed = [f for f in files if f.is_file() and f not in claimed]
    else:
        unclaimed = []
    errors = [(str(f), "not a file type of these checkpoints' tasks") for f in unclaimed]
    # The report is written into a hidden folder beside --out and swapped in only when complete:
    # an earlier report there stays whole until then (and whole if this run fails or is killed).
    with staging_folder(out_dir, "report") as staging:
        sections = _build_sections(args, loaded, files, staging, device, errors, log)
        seen, unique = set(), []
        for file, message in errors:  # a bad image is met by both image tasks: say it once
            if file not in seen:
                seen.add(file)
                unique.append((file, message))
        report = {
            "title": args.title,
            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "sections": sections,
        }
        write_report(report, staging)
        try:
            if replace_whole:
                swap_folders(staging, out_dir)
            else:
                _merge_into(staging, out_dir)
        except OSError as err:
            raise UserError(f"{out_dir}: cannot write the report here ({err.strerror or err})") from None
    return out_dir / "index.html", unique


def _build_sections(
    args: argparse.Namespace,
    loaded: list,
    files: list[Path] | None,
    out_dir: Path,
    device: Any,
    errors: list[tuple[str, str]],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Run each checkpoint's adapter, writing its assets under ``out_dir``; appends skipped inputs."""
    sections = []
    for index, (ckpt, checkpoint, task) in enumerate(loaded):
        assets = out_dir / "assets" / f"s{index}-{task}"
        assets.mkdir(parents=True, exist_ok=True)
        request = SectionRequest(
            ckpt=ckpt,
            checkpoint=checkpoint,
            out_dir=out_dir,
            assets=assets,
            inputs=None if files is None else _inputs_for(task, files),
            split=args.split or "test",
            limit=args.limit,
            data_dir=None if args.data_dir is None else Path(args.data_dir) / task,
            device=device,
            batch_size=args.batch_size,
        )
        if request.inputs is not None and not request.inputs:
            log(f"{ckpt}: no {'audio' if task == 'asr' else 'image'} files among --inputs; section left out")
            continue
        started = time.perf_counter()
        section = _adapter(task)(request)
        section.setdefault("title", TASKS[task][2])
        section["checkpoint"] = str(ckpt)
        sections.append(section)
        errors.extend(request.errors)
        log(f"{task}: {len(section['items'])} examples from {ckpt} in {time.perf_counter() - started:.1f} s")
    if not sections or not any(s["items"] for s in sections):
        for file, message in errors:
            log(f"{file}: {message}")
        raise UserError("nothing to report: no example could be read")
    return sections


def is_report_folder(folder: Path) -> bool:
    """``True`` when ``folder`` holds a report written by this command and nothing else."""
    data = folder / "data.js"
    try:
        with open(data, encoding="utf-8") as handle:
            if not handle.read(64).startswith(REPORT_MARKER):
                return False
    except (OSError, UnicodeDecodeError):
        return False
    return {p.name for p in folder.iterdir()} <= set(REPORT_ENTRIES)


def check_out_folder(out_dir: Path, *, force: bool) -> bool:
    """Whether ``--out`` may be replaced whole (new, empty or an earlier report); ``False`` with ``--force``
    on a folder holding anything else, whose report entries alone are then replaced.

    Raises:
        UserError: ``--out`` is a file, or a non-empty folder that is not a report (without ``--force``).
    """
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        raise UserError(f"{out_dir}: --out exists and is not a folder")
    if not any(out_dir.iterdir()) or is_report_folder(out_dir):
        return True
    if not force:
        raise UserError(
            f"{out_dir}: --out is not empty and holds no earlier report; nothing was written: choose "
            f"another folder, or add --force to replace {', '.join(REPORT_ENTRIES)} there and keep the rest"
        )
    return False


def _merge_into(staging: Path, out_dir: Path) -> None:
    """``--force``: move the report's entries into ``out_dir`` (``index.html`` last); the entries they
    replace go to ``staging`` (removed by the caller), everything else in ``out_dir`` stays."""
    aside = staging / ".replaced"
    aside.mkdir()
    for name in sorted(REPORT_ENTRIES, key=lambda n: n == "index.html"):
        new, target = staging / name, out_dir / name
        if target.exists() or target.is_symlink():
            os.rename(target, aside / name)
        os.rename(new, target)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``multiattn report``."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    log = lambda text: print(f"multiattn report: {text}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        import torch

        with torch.inference_mode():
            index, errors = build_report(args, log)
    except UserError as err:
        print(f"multiattn report: error: {err}", file=sys.stderr)
        return 2
    for file, message in errors:
        print(f"multiattn report: {file}: {message}", file=sys.stderr)
    print(index)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
