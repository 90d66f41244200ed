"""Where the benchmarks write their results, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multiattn.io import atomic_open, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def shown_path(path: Path | str) -> str:
    """``path`` as results record it: relative to the repository when inside it (results are
    committed and must not name the machine they ran on), as given otherwise."""
    resolved = Path(path).resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)


def write_results(stem: str, result: dict[str, Any], markdown: str, *, indent: int = 1) -> None:
    """``results/<stem>.json`` and ``results/<stem>.md`` (each written atomically); prints the Markdown."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{stem}.json", result, indent=indent)
    with atomic_open(RESULTS / f"{stem}.md", "w", encoding="utf-8") as handle:
        handle.write(markdown)
    print(markdown)
