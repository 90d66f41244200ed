"""Shared plumbing of the application commands (``caption``, ``classify``, ``transcribe``).

Each task's ``app.main(argv)`` builds a parser with :func:`app_parser`, adds its own flags, and
hands a ``predict(args)`` generator to :func:`run_app`. ``predict`` yields one dict per input file:
the result (``{"file": ..., "caption": ...}``) or ``{"file": ..., "error": "..."}`` for a file that
could not be read. :func:`run_app` prints plain text or JSON lines, reports bad files on stderr as
one line each, and maps :class:`~multiattn.io.UserError` to exit status 2 without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from multiattn.io import UserError

__all__ = ["app_parser", "run_app", "resolve_device", "expand_inputs", "to_jsonable"]


def app_parser(
    prog: str, description: str, inputs_help: str = "input files (or folders of them)"
) -> argparse.ArgumentParser:
    """A parser with the flags every application command shares."""
    parser = argparse.ArgumentParser(prog=f"multiattn {prog}", description=description)
    parser.add_argument("inputs", nargs="+", help=inputs_help)
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by `multiattn fit` (.ckpt)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input file")
    parser.add_argument(
        "--overlay-dir", type=Path, default=None, help="write one attention overlay PNG per input here"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="inputs processed together (default 16)")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1, mps, ..."
    )
    return parser


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device {name}: {err}") from None


def expand_inputs(paths: Sequence[str | Path], extensions: Iterable[str]) -> list[Path]:
    """Files as given, and the files with one of ``extensions`` inside any folder given (sorted).

    Missing paths are kept, so the task reports them as per-file errors.
    """
    exts = {e.lower() for e in extensions}
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts))
        else:
            out.append(p)
    return out


def to_jsonable(value: Any) -> Any:
    """Tensors and numpy values -> Python numbers / lists, recursively."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def run_app(
    argv: Sequence[str] | None,
    parser: argparse.ArgumentParser,
    predict: Callable[[argparse.Namespace], Iterable[dict[str, Any]]],
    format_text: Callable[[dict[str, Any]], str],
) -> int:
    """Parse ``argv``, run ``predict`` and print its records.

    Returns:
        0 when every input succeeded, 1 when some input file failed, 2 on a usage / user error.
    """
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    failed = 0
    try:
        for record in predict(args):
            if "error" in record:
                failed += 1
                print(f"{parser.prog}: {record['file']}: {record['error']}", file=sys.stderr)
                continue
            if args.json:
                print(json.dumps(to_jsonable(record), ensure_ascii=False), flush=True)
            else:
                print(format_text(record), flush=True)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    return 1 if failed else 0
