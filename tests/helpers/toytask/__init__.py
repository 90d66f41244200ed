"""A fourth task that exists only in the tests: ``tally`` counts the words of text files.

It is registered the way any task is (a ``multiattn.apps`` entry point naming :data:`TASK`, here
from a distribution the test writes at run time), and proves that a task gets its app command,
its line in ``multiattn --help`` and its report section without an edit to any existing file.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from multiattn.apps import app_parser, expand_inputs, run_app
from multiattn.registry import Task

EXTENSIONS = (".txt",)


class TallySystem:
    """Stands for the LightningModule a real task's checkpoints hold (never loaded here)."""


def count_words(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = app_parser("tally", "Count the words of text files.")

    def predict(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
        for path in expand_inputs(args.inputs, EXTENSIONS):
            try:
                yield {"file": str(path), "words": count_words(path)}
            except OSError as err:
                yield {"file": str(path), "error": err.strerror or str(err)}

    return run_app(argv, parser, predict, lambda record: f"{record['file']}\t{record['words']} words")


def build_section(request: Any) -> dict[str, Any]:
    items = [{"file": str(path), "words": count_words(path)} for path in request.inputs or []]
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
    input_extensions=EXTENSIONS,
    input_kind="text",
    renderer="explorer.js",
)
