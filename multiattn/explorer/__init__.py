"""The HTML attention explorer: one static, self-contained report for every task.

:func:`write_report` takes a report description (plain dicts, see below) and writes
``out_dir/index.html`` with its assets beside it: ``explorer.js``, ``explorer.css``, ``data.js``
(the report as ``window.MULTIATTN_REPORT``, loaded by a script tag so the page works from
``file://`` with no server), one ``render-<task>.js`` per task shown (the task's renderer, found
in the task registry, :mod:`multiattn.registry`) and whatever image / audio files the sections
reference (the caller writes those under ``out_dir/assets/``). No network access, no CDN.

Report description::

    {"title": str,
     "sections": [{
        "task": a registered task's name, "title": str,
        "checkpoint": str, "data": str, "metrics": {name: number | str},
        "items": [...]}]}

Each item is a dict with at least ``"file"``; the rest is the task's own: its report adapter
writes it and its renderer reads it (paths relative to ``out_dir``).
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import Any

from multiattn.io import atomic_open
from multiattn.registry import tasks

__all__ = ["write_report"]

_STATIC = ("explorer.js", "explorer.css")


def _validate(report: dict[str, Any], kinds: Collection[str]) -> None:
    if not isinstance(report.get("sections"), list) or not report["sections"]:
        raise ValueError("report: expected a non-empty 'sections' list")
    for i, section in enumerate(report["sections"]):
        if section.get("task") not in kinds:
            raise ValueError(
                f"report section {i}: task must be one of the registered tasks ({', '.join(kinds)}), "
                f"received {section.get('task')!r}"
            )
        if not isinstance(section.get("items"), list):
            raise ValueError(f"report section {i}: expected an 'items' list")


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write the explorer for ``report`` into ``out_dir``; returns the path of ``index.html``.

    Every file is written atomically, ``index.html`` last, so an interrupted run never leaves a
    page that points at missing data.
    """
    registered = tasks()
    _validate(report, registered)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    static = resources.files("multiattn.explorer") / "static"
    for name in _STATIC:
        with resources.as_file(static / name) as src, atomic_open(out_dir / name, "wb") as dst:
            with open(src, "rb") as f:
                shutil.copyfileobj(f, dst)
    payload = json.dumps(report, ensure_ascii=False, separators=(",", ":"))
    # "</" cannot appear inside a script element; JSON allows escaping "/".
    payload = payload.replace("</", "<\\/")
    with atomic_open(out_dir / "data.js", "w", encoding="utf-8") as f:
        f.write(f"window.MULTIATTN_REPORT = {payload};\n")
    renderers = []
    for kind in dict.fromkeys(section["task"] for section in report["sections"]):
        renderers.append(f"render-{kind}.js")
        with atomic_open(out_dir / renderers[-1], "w", encoding="utf-8") as f:
            f.write(registered[kind].renderer_source())
    scripts = "\n".join(f'<script src="{html.escape(name)}"></script>' for name in renderers)
    title = html.escape(str(report.get("title", "multiattn attention explorer")))
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="explorer.css">
</head>
<body>
<header><h1>{title}</h1><p id="summary"></p></header>
<nav id="tabs"></nav>
<main id="main"><noscript>This report needs JavaScript to show the examples.</noscript></main>
<script src="data.js"></script>
{scripts}
<script src="explorer.js"></script>
</body>
</html>
"""
    index = out_dir / "index.html"
    with atomic_open(index, "w", encoding="utf-8") as f:
        f.write(page)
    return index
