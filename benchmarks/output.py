"""Where the benchmarks write their results, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multiattn.io import atomic_open, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(stem: str, result: dict[str, Any], markdown: str, *, indent: int = 1) -> None:
    """``results/<stem>.json`` and ``results/<stem>.md`` (each written atomically); prints the Markdown."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{stem}.json", result, indent=indent)
    with atomic_open(RESULTS / f"{stem}.md", "w", encoding="utf-8") as handle:
        handle.write(markdown)
    print(markdown)
