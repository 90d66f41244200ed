"""Shared plumbing of the application commands (``caption``, ``classify``, ``transcribe``).

The commands are thin layers over the task pipelines (:mod:`multiattn.pipeline`): each task's
``app.main(argv)`` builds a parser with :func:`app_parser`, adds its own flags, and hands
:func:`run_app` a ``setup(args)`` that checks its flags and returns an :class:`AppJob` (the loaded
pipeline, the input files, the options). :func:`run_app` then, in this order:

1. checks every output before any model runs: ``--overlay-dir`` (and the job's own output folder)
   must be a writable folder, and no file the run will write may exist unless ``--overwrite``;
2. runs the pipeline over the files in batches, with a progress bar on stderr (only when stderr is
   a terminal; ``--quiet`` turns it off);
3. prints one line of text or one JSON object (``--json``) per input; a file that could not be used
   is reported on stderr as one line and the others go on; overlays go to ``--overlay-dir`` under a
   name unique within the run (``x.png``, then ``x_2.png`` for a second ``x``), named in the
   record's ``overlay`` key;
4. puts the files in place (:func:`_commit`). Every file goes first into a hidden staging folder
   beside its output folder (:func:`multiattn.io.staging_folder`); when the run ends, an output
   folder that is empty or holds only files this run wrote again is exchanged whole with the
   staged one (:func:`multiattn.io.swap_folders`: a run killed at any point leaves the previous
   complete result or the new one); a folder holding other files too gets each new file by
   ``os.replace`` (each file whole). A run stopped by an error puts nothing in place.

Exit status: 0 when every input succeeded, 1 when some input file failed, 2 on a usage / user
error (one line, no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multiattn.io import UserError, staging_folder, swap_folders, to_jsonable
from multiattn.pipeline import InputError, OptionError, Pipeline, Result
from multiattn.pipeline import resolve_device as _resolve_device

__all__ = [
    "AppJob",
    "app_parser",
    "check_writable_dir",
    "expand_inputs",
    "progress",
    "resolve_device",
    "run_app",
    "to_jsonable",
    "unique_stems",
]


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (``prog: error: ...``) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def app_parser(
    prog: str, description: str, inputs_help: str = "input files (or folders of them)"
) -> argparse.ArgumentParser:
    """A parser with the flags every application command shares."""
    parser = _OneLineParser(prog=f"multiattn {prog}", description=description)
    parser.add_argument("inputs", nargs="+", help=inputs_help)
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by `multiattn fit` (.ckpt)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input file")
    parser.add_argument(
        "--overlay-dir",
        type=Path,
        default=None,
        help="write one attention overlay PNG per input here (names unique within the run)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files the run writes that already exist (default: refuse before running)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="inputs processed together (default 16)")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1, mps, ..."
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)"
    )
    return parser


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unavailable device is a ``--device`` error."""
    try:
        return _resolve_device(name)
    except OptionError as err:
        raise err.as_flag() from None


def check_writable_dir(path: Path, flag: str) -> Path:
    """Create ``path`` if needed and prove a file can be written in it, or raise a one-line error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(f"{flag} {path}: not writable ({err.strerror or type(err).__name__})") from None
    return path


def expand_inputs(paths: Sequence[str | Path], extensions: Iterable[str]) -> list[Path]:
    """Files as given, and the files with one of ``extensions`` inside any folder given (sorted).

    Missing paths are kept, so the task reports them as per-file errors. A folder holding no file
    with one of ``extensions`` is a :class:`UserError`.
    """
    exts = {e.lower() for e in extensions}
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            if not found:
                raise UserError(
                    f"{p}: no files of a recognised type ({' '.join(sorted(exts))}) in this folder"
                )
            out.extend(found)
        else:
            out.append(p)
    return out


def unique_stems(files: Sequence[Path | str | None]) -> list[str]:
    """One output name per input: its stem, with ``_2``, ``_3``, ... for repeats (case-insensitive)."""
    used: set[str] = set()
    stems = []
    for index, file in enumerate(files):
        base = Path(file).stem if file is not None else f"input_{index:03d}"
        stem, count = base, 1
        while stem.lower() in used:
            count += 1
            stem = f"{base}_{count}"
        used.add(stem.lower())
        stems.append(stem)
    return stems


def progress(
    iterable: Iterable[Any] | None, total: int, *, quiet: bool, desc: str, unit: str = "file"
) -> Any:
    """``tqdm`` on stderr, shown only when stderr is a terminal and not ``quiet`` (``iterable=None``:
    a bar advanced by ``update(n)``)."""
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    )


@dataclass
class AppJob:
    """What a command runs (returned by its ``setup(args)``).

    Attributes:
        pipeline: the loaded task pipeline.
        files: the input files.
        options: the pipeline options from the flags.
        overlay_suffix: appended to each overlay's name (``x_stn.png``).
        output_dir: a folder the job writes its own files in (checked like ``--overlay-dir``).
        output_names: ``stem -> [file names]`` the job writes for an input (checked for overwrites).
        write_outputs: ``(result, stem, folder)`` -> write the job's own files for one result
            into ``folder`` (a staging folder that :func:`run_app` puts in place of ``output_dir``).
    """

    pipeline: Pipeline
    files: list[Path]
    options: dict[str, Any] = field(default_factory=dict)
    overlay_suffix: str = ""
    output_dir: tuple[str, Path] | None = None  # (flag, folder)
    output_names: Callable[[str], list[str]] | None = None
    write_outputs: Callable[[Result, str, Path], None] | None = None


def run_app(
    argv: Sequence[str] | None,
    parser: argparse.ArgumentParser,
    setup: Callable[[argparse.Namespace], AppJob],
    format_text: Callable[[dict[str, Any]], str],
) -> int:
    """Parse ``argv``, set the job up, run it and print its records (module docstring)."""
    args = parser.parse_args(list(argv) if argv is not None else None)
    prog = parser.prog
    failed = 0
    try:
        if args.batch_size < 1:
            raise UserError(f"--batch-size {args.batch_size}: expected at least 1")
        if args.overlay_dir is not None:
            check_writable_dir(args.overlay_dir, "--overlay-dir")
        try:
            job = setup(args)
        except OptionError as err:
            raise err.as_flag() from None
        if not job.files:
            raise UserError(f"{' '.join(args.inputs)}: no input files found")
        if job.output_dir is not None:
            check_writable_dir(job.output_dir[1], job.output_dir[0])
        stems = unique_stems(job.files)
        targets = _planned_outputs(args, job, stems)
        if not args.overwrite:
            for target in targets:
                if target.exists():
                    raise UserError(f"{target}: exists (pass --overwrite to replace it)")
        with contextlib.ExitStack() as stack:
            staged: dict[Path, Path] = {}  # output folder -> its staging folder

            def staging(folder: Path) -> Path:
                key = Path(os.path.abspath(folder))
                if key not in staged:
                    staged[key] = stack.enter_context(staging_folder(key, "run"))
                return staged[key]

            overlay_stage = staging(args.overlay_dir) if args.overlay_dir is not None else None
            output_stage = staging(job.output_dir[1]) if job.output_dir is not None else None
            results = job.pipeline.run(job.files, batch_size=args.batch_size, **job.options)
            bar = progress(results, len(job.files), quiet=args.quiet, desc=prog.split()[-1])
            for stem, result in zip(stems, bar):
                if isinstance(result, InputError):
                    failed += 1
                    _stderr(f"{prog}: {result.file}: {result.error}")
                    continue
                for warning in result.warnings:
                    _stderr(f"{prog}: {result.file}: warning: {warning}")
                if overlay_stage is not None:
                    name = f"{stem}{job.overlay_suffix}.png"
                    result.save_overlay(overlay_stage / name)
                    _name_final_paths(result.record, overlay_stage, Path(args.overlay_dir))
                if job.write_outputs is not None and output_stage is not None:
                    job.write_outputs(result, stem, output_stage)
                record = result.to_dict()
                if args.json:
                    print(json.dumps(record, ensure_ascii=False), flush=True)
                else:
                    print(format_text(record), flush=True)
            for folder, stage in staged.items():
                _commit(stage, folder)
    except UserError as err:
        _stderr(f"{prog}: error: {err}")
        return 2
    except OSError as err:  # a full disk or a folder made read-only during the run
        where = f"{err.filename}: " if err.filename else ""
        _stderr(f"{prog}: error: {where}{err.strerror or err}")
        return 2
    return 1 if failed else 0


def _name_final_paths(record: dict[str, Any], stage: Path, folder: Path) -> None:
    """Make the record name the overlays where they will be (``overlay``, ``overlay_pieces``)."""

    def final(path: Any) -> Any:
        return str(folder / Path(path).name) if Path(path).parent == stage else path

    for key in ("overlay", "overlay_pieces"):
        if isinstance(record.get(key), str):
            record[key] = final(record[key])
        elif isinstance(record.get(key), list):
            record[key] = [final(path) for path in record[key]]


def _commit(stage: Path, folder: Path) -> None:
    """Put the files staged in ``stage`` into ``folder`` (see the module docstring, step 4)."""
    new = {p.name for p in stage.iterdir()}
    if not new:
        return  # every input failed: leave the folder as it is
    old = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    cwd = Path.cwd().resolve()
    holds_cwd = folder.resolve() == cwd or folder.resolve() in cwd.parents
    if old <= new and not holds_cwd:
        # One atomic exchange; the previous folder (only files this run rewrote) ends up at
        # ``stage``, which its staging_folder removes. Never done to the working directory, which
        # the shell would be left inside of after the exchange.
        swap_folders(stage, folder)
        return
    # Other files are there: move each new file in whole (a kill in this loop can leave some new
    # files beside the old ones).
    for name in sorted(new):
        os.replace(stage / name, folder / name)


def _planned_outputs(args: argparse.Namespace, job: AppJob, stems: list[str]) -> list[Path]:
    targets = []
    for stem in stems:
        if args.overlay_dir is not None:
            targets.append(Path(args.overlay_dir) / f"{stem}{job.overlay_suffix}.png")
        if job.output_dir is not None and job.output_names is not None:
            targets.extend(job.output_dir[1] / name for name in job.output_names(stem))
    return targets


def _stderr(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
    sys.stderr.flush()
