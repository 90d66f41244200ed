"""Generated datasets cached on disk with a manifest.

Every task's embedded default data is generated offline, deterministically from a seed, and
cached under ``data/<task>/``. A cache directory is valid when its ``manifest.json`` exists,
parses, was written by the same generator version with the same parameters, and every file
it lists exists with the recorded size. Anything else (missing, truncated, different
parameters) is regenerated from scratch, and the manifest is written last (atomically), so an
interrupted generation is never mistaken for a complete one.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multiattn.io import write_json

__all__ = ["MANIFEST_NAME", "cached_generate", "read_manifest", "manifest_is_valid"]

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.json"


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest in ``root``, or ``None`` when it is missing or does not parse."""
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def manifest_is_valid(root: str | Path, params: dict[str, Any]) -> bool:
    """``True`` when ``root`` holds a complete cache generated with ``params``."""
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None or manifest.get("params") != json.loads(json.dumps(params)):
        return False
    files = manifest.get("files")
    if not isinstance(files, dict):
        return False
    for rel, size in files.items():
        f = root / rel
        if not f.is_file() or f.stat().st_size != size:
            return False
    return True


def cached_generate(
    root: str | Path,
    params: dict[str, Any],
    generate: Callable[[Path], dict[str, Any] | None],
) -> dict[str, Any]:
    """Return the manifest of the cache in ``root``, generating it first when invalid.

    Args:
        root: cache directory (e.g. ``data/stn/cluttered``).
        params: everything the output depends on (seed, sizes, generator version). JSON-able.
        generate: ``generate(root)`` writes the files into the (emptied) ``root`` and returns
            extra manifest fields (e.g. split sizes). Every file it leaves in ``root`` is listed
            in the manifest with its size.

    Returns:
        The manifest: ``{"params", "files", **extra}``.
    """
    root = Path(root)
    if manifest_is_valid(root, params):
        return read_manifest(root)  # type: ignore[return-value]
    if root.exists():
        log.warning("regenerating %s (cache missing, corrupt or made with other parameters)", root)
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    extra = generate(root) or {}
    files = {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    manifest = {"params": params, "files": files, **extra}
    write_json(root / MANIFEST_NAME, manifest, indent=1)
    return manifest
