"""A fourth task that exists only in the tests: ``tally`` counts the words of text files.

It is registered the way any task is (a ``multiattn.apps`` entry point naming :data:`TASK`, here
from a distribution the test writes at run time), and proves that a task gets its app command,
its line in ``multiattn --help``, its report section and ``multiattn.load`` without an edit to any
existing file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multiattn.apps import AppJob, app_parser, expand_inputs, run_app
from multiattn.checkpoint import load_checkpoint
from multiattn.io import UserError
from multiattn.pipeline import Pipeline, Result
from multiattn.registry import Inputs, Task

EXTENSIONS = (".txt",)


class TallySystem:
    """Stands for the LightningModule a real task's checkpoints hold (never loaded here)."""


def count_words(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").split())


class TallyPipeline(Pipeline):
    """The toy task's pipeline: a path in, ``{"file", "words"}`` out."""

    task = "tally"

    @classmethod
    def build_system(cls, path: Path, device: Any) -> TallySystem:
        load_checkpoint(path)
        return TallySystem()

    def prepare(self, item: Any, name: str | None, settings: dict[str, Any]) -> Any:
        try:
            return name, count_words(Path(item))
        except OSError as err:
            raise UserError(f"{item}: {err.strerror or err}") from None

    def forward(self, prepared: list[Any], settings: dict[str, Any]) -> list[Result]:
        return [Result({"file": name, "words": words}) for name, words in prepared]


def main(argv: Sequence[str] | None = None) -> int:
    parser = app_parser("tally", "Count the words of text files.")

    def setup(args: argparse.Namespace) -> AppJob:
        files = expand_inputs(args.inputs, EXTENSIONS)
        return AppJob(TallyPipeline.from_checkpoint(args.ckpt, args.device), files)

    return run_app(argv, parser, setup, lambda record: f"{record['file']}\t{record['words']} words")


def build_section(request: Any) -> dict[str, Any]:
    files = list(request.inputs or [])
    items = [{"file": str(path), "words": count_words(path)} for path in request.progress(files, len(files))]
    metrics = {"words": sum(item["words"] for item in items)}
    return {"data": f"{len(items)} text file(s)", "metrics": metrics, "items": items}


TASK = Task(
    name="tally",
    title="word tally",
    package=__package__,
    help="count the words of text files (a task defined only in the tests)",
    app=main,
    system=TallySystem,
    report=build_section,
    inputs=Inputs("text", EXTENSIONS),
    renderer="explorer.js",
    pipeline=TallyPipeline,
)
