"""``multiattn report``: the HTML attention explorer for one or more checkpoints.

    multiattn report --ckpt C [--ckpt C2 ...] (--inputs FILE... | --split test --limit N) --out DIR
                     [--data-dir D] [--device auto] [--batch-size 16] [--title T] [--quiet]

Each checkpoint becomes one section of the report written by :func:`multiattn.explorer.write_report`
(``DIR/index.html`` with ``explorer.js``, ``explorer.css``, ``data.js`` and ``DIR/assets/``; no
server, no network). Tasks are found in the registry (:mod:`multiattn.registry`); this module
names none. The task of a checkpoint is the one whose package holds the class path LightningCLI
recorded (``hyper_parameters["_class_path"]``), or else the first whose system class loads it.
The task's report adapter (its ``report`` piece, given a
:class:`multiattn.tasks.common.report.SectionRequest`) runs the model and writes the assets:

- ``--split test --limit N``: the first ``N`` examples of the split of the data the checkpoint was
  trained on (the datamodule's hyper-parameters travel in a LightningCLI checkpoint; the embedded
  default is regenerated from its seed when missing), with references / true labels / boxes / word
  times, per-example scores and the section's corpus metrics;
- ``--inputs FILE...``: the user's files, each given to the sections whose task reads its type
  (the task's ``inputs``); a file that cannot be read is reported on stderr as one line
  and skipped.

While a section is built, a progress bar counts its examples on stderr (only when stderr is a
terminal; ``--quiet`` turns it off): every adapter wraps its loop in ``SectionRequest.progress``.

``--data-dir D`` puts every task's data under ``D/<task>`` instead of the folder recorded in the
checkpoint. Exit status: 0, 1 when some input file was skipped, 2 on a user error (one line).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from multiattn.apps import expand_inputs, resolve_device
from multiattn.io import UserError, staging_folder, swap_folders
from multiattn.registry import Command, Task, tasks
from multiattn.tasks.common.report import SectionRequest

__all__ = ["COMMAND", "detect_task", "build_parser", "build_report", "main"]

SPLITS = ("test", "val", "train")
# What a report folder holds (plus one render-<task>.js per task shown), and how its data.js
# starts (tells an earlier report from other files).
REPORT_ENTRIES = ("index.html", "data.js", "explorer.js", "explorer.css", "assets")
RENDERER_FILES = "render-*.js"
REPORT_MARKER = "window.MULTIATTN_REPORT"


# ---- tasks ------------------------------------------------------------------------------------
def detect_task(ckpt: Path, checkpoint: dict[str, Any], registered: dict[str, Task]) -> Task:
    """The task of a checkpoint: from its ``_class_path``, else the first system class it loads into."""
    class_path = str((checkpoint.get("hyper_parameters") or {}).get("_class_path") or "")
    names = ", ".join(registered) or "none registered"
    for task in registered.values():
        if task.owns(class_path):
            return task
    if class_path:
        raise UserError(f"{ckpt}: checkpoint of {class_path}, not of a multiattn task ({names})")
    from multiattn.checkpoint import load_system

    for task in registered.values():
        try:
            load_system(task.load("system"), ckpt)
        except (UserError, TypeError, ValueError, KeyError, RuntimeError):
            continue
        return task
    raise UserError(f"{ckpt}: checkpoint of no known task (tried {names})")


def _inputs_for(task: Task, files: list[Path]) -> list[Path]:
    """The files (and the files inside folders) of ``--inputs`` that ``task`` reads."""
    wanted = task.extensions()
    return [f for f in expand_inputs(files, wanted) if f.suffix.lower() in wanted or not f.exists()]


# ---- the command ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiattn report",
        description="Write the HTML attention explorer (a static folder, no server) for one or more "
        "checkpoints of the registered tasks (" + ", ".join(tasks()) + ").",
    )
    parser.add_argument(
        "--ckpt", action="append", required=True, help="a checkpoint written by `multiattn fit` (repeatable)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--inputs",
        nargs="+",
        help="files or folders; each checkpoint's section takes the file types its task reads",
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
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)"
    )
    return parser


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
    registered = tasks()
    loaded = []
    for ckpt in map(Path, args.ckpt):
        try:
            checkpoint = load_checkpoint(ckpt)
        except UserError:
            raise
        except Exception as err:
            raise UserError(f"{ckpt}: not a readable checkpoint ({type(err).__name__}: {err})") from None
        loaded.append((ckpt, checkpoint, detect_task(ckpt, checkpoint, registered)))
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
        assets = out_dir / "assets" / f"s{index}-{task.name}"
        assets.mkdir(parents=True, exist_ok=True)
        request = SectionRequest(
            ckpt=ckpt,
            checkpoint=checkpoint,
            out_dir=out_dir,
            assets=assets,
            inputs=None if files is None else _inputs_for(task, files),
            split=args.split or "test",
            limit=args.limit,
            data_dir=None if args.data_dir is None else Path(args.data_dir) / task.name,
            device=device,
            batch_size=args.batch_size,
            label=f"{task.name} {index + 1}/{len(loaded)}",
            quiet=getattr(args, "quiet", False),
        )
        if request.inputs is not None and not request.inputs:
            log(f"{ckpt}: no {task.inputs.kind} files among --inputs; section left out")
            continue
        started = time.perf_counter()
        section = task.load("report")(request)
        section.setdefault("task", task.name)
        section.setdefault("title", task.title)
        section["checkpoint"] = str(ckpt)
        sections.append(section)
        errors.extend(request.errors)
        log(
            f"{task.name}: {len(section['items'])} examples from {ckpt} in {time.perf_counter() - started:.1f} s"
        )
    if not sections or not any(s["items"] for s in sections):
        for file, message in errors:
            log(f"{file}: {message}")
        raise UserError("nothing to report: no example could be read")
    return sections


def is_report_folder(folder: Path) -> bool:
    """``True`` when ``folder`` holds a report written by this command and nothing else."""
    try:
        with open(folder / "data.js", encoding="utf-8") as handle:
            if not handle.read(64).startswith(REPORT_MARKER):
                return False
    except (OSError, UnicodeDecodeError):
        return False
    return all(name in REPORT_ENTRIES or fnmatch(name, RENDERER_FILES) for name in os.listdir(folder))


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
            f"another folder, or add --force to replace {', '.join(REPORT_ENTRIES)} and {RENDERER_FILES} "
            "there and keep the rest"
        )
    return False


def _merge_into(staging: Path, out_dir: Path) -> None:
    """``--force``: move the report's entries into ``out_dir`` (``index.html`` last); the entries they
    replace go to ``staging`` (removed by the caller), everything else in ``out_dir`` stays."""
    aside = staging / ".replaced"
    aside.mkdir()
    renderers = {p.name for folder in (staging, out_dir) for p in folder.glob(RENDERER_FILES)}
    for name in sorted({*REPORT_ENTRIES, *renderers}, key=lambda n: (n == "index.html", n)):
        new, target = staging / name, out_dir / name
        if target.exists() or target.is_symlink():
            os.rename(target, aside / name)
        if new.exists():  # not for the renderer of a task only the earlier report showed
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


COMMAND = Command(
    name="report", help="write the HTML attention explorer for one or more checkpoints", main=main
)

if __name__ == "__main__":
    raise SystemExit(main())
