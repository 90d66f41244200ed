"""The configs that ship inside the package, and ``multiattn configs``.

The repository keeps its YAML files in ``configs/``; ``multiattn/configs`` links to that folder, so
the wheel carries them as package data and the same lookup works from a clone and from an
installation. ``multiattn fit -c stn`` (a name, no such file) runs the packaged ``stn.yaml``:
:func:`resolve_config_args` rewrites ``-c`` / ``--config`` values that name no file but a packaged
config. A config still writes its outputs (``outputs/<task>/``) and data (``data/<task>/``)
relative to the current directory.

    multiattn configs            # list the packaged configs, one line each
    multiattn configs stn        # print configs/stn.yaml (redirect it to a file to edit a copy)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["config_dir", "packaged_configs", "find_config", "resolve_config_args", "main"]


def config_dir() -> Path:
    """The folder of the packaged configs."""
    return Path(__file__).resolve().parent / "configs"


def packaged_configs() -> dict[str, Path]:
    """``{name: path}`` of every packaged config, sorted by name (``name`` = file name without .yaml)."""
    folder = config_dir()
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def find_config(name: str) -> Path | None:
    """The packaged config ``name`` means (``stn``, ``stn.yaml`` or ``configs/stn.yaml``), or None."""
    path = Path(name)
    if path.parent not in (Path("."), Path("configs")) or path.suffix not in ("", ".yaml"):
        return None
    return packaged_configs().get(path.stem if path.suffix else path.name)


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``-c`` / ``--config`` value that names no file but a packaged config
    replaced by the packaged file's path. Existing files always win."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("-c", "--config") and i + 1 < len(out):
            index, value, prefix = i + 1, out[i + 1], ""
        elif arg.startswith("--config="):
            index, value, prefix = i, arg.split("=", 1)[1], "--config="
        else:
            continue
        if not Path(value).exists() and (found := find_config(value)) is not None:
            out[index] = prefix + str(found)
    return out


def _summary(path: Path) -> str:
    """The config's description: its comment lines after the command line, up to the first period."""
    comments = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.startswith("#"):
            break
        comments.append(line.lstrip("# ").strip())
    text = " ".join(comments)
    text = text.split(". ")[0].rstrip(".:")
    return text if len(text) <= 100 else text[:99].rstrip() + "…"


def main(argv: Sequence[str] | None = None) -> int:
    """``multiattn configs [NAME]``."""
    parser = argparse.ArgumentParser(
        prog="multiattn configs",
        description="List the configs that ship with multiattn, or print one. Any of them runs by name: "
        "multiattn fit -c NAME.",
    )
    parser.add_argument("name", nargs="?", help="print this config (e.g. stn, asr_tiny)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    configs = packaged_configs()
    if args.name is None:
        width = max(map(len, configs), default=0)
        for name, path in configs.items():
            print(f"{name:<{width}}  {_summary(path)}")
        return 0
    path = find_config(args.name)
    if path is None:
        known = ", ".join(configs) or "none"
        print(f"multiattn configs: error: no packaged config {args.name!r} (known: {known})", file=sys.stderr)
        return 2
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0
