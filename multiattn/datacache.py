"""Generated datasets cached on disk with a manifest.

Every task's embedded default data is generated offline, deterministically from a seed, and
cached under ``data/<task>/``. A cache directory is valid when its ``manifest.json`` exists,
parses, was written by the same generator version with the same parameters, and every file it
lists exists with the recorded size and checksum (CRC-32 over the whole file).
Anything else (missing, truncated, damaged in place, different parameters) is regenerated.

Safety rules (a data folder is often a path the user typed):

- A cache only ever deletes or replaces files its own manifest lists (or, when its manifest is
  damaged beyond parsing, the files the new generation writes under the same names). A
  non-empty folder without a manifest is refused with a one-line :class:`~multiattn.io.UserError`,
  and so is a folder whose ``manifest.json`` is not a cache manifest.
- Generation runs in a hidden staging folder beside the cache (``.<name>.generating-*``) and is
  moved in only when complete, the manifest last. A staging folder left by a killed run is
  removed by the next run (each holds a lock while its generator is alive, so a run never
  removes another live run's staging folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multiattn.io import UserError, staging_folder, write_json

__all__ = ["MANIFEST_NAME", "cached_generate", "read_manifest", "manifest_is_valid", "file_checksum"]

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 22


def file_checksum(path: str | Path) -> str:
    """CRC-32 of a file's bytes, as 8 hex digits.

    A check against accidental damage, not tampering: CRC-32 catches every burst error up to 32
    bits and misses random damage with odds 2**-32, at several GB/s (zlib's SIMD code; BLAKE2b
    runs at about a sixth of that), so verifying a cache on every open costs well under a second.
    """
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest in ``root``, or ``None`` when it is missing or does not parse."""
    path = Path(root) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _is_cache_manifest(manifest: dict[str, Any] | None) -> bool:
    return manifest is not None and "params" in manifest and isinstance(manifest.get("files"), dict)


def _listed_files(root: Path, manifest: dict[str, Any]) -> list[Path]:
    """The manifest's files that lie inside ``root`` (a manifest never reaches outside its folder)."""
    inside = []
    base = root.resolve()
    for rel in manifest["files"]:
        path = (root / str(rel)).resolve()
        if path != base and base in path.parents:
            inside.append(root / str(rel))
    return inside


def manifest_is_valid(root: str | Path, params: dict[str, Any]) -> bool:
    """``True`` when ``root`` holds a complete, undamaged cache generated with ``params``."""
    root = Path(root)
    manifest = read_manifest(root)
    if not _is_cache_manifest(manifest) or manifest.get("params") != json.loads(json.dumps(params)):
        return False
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or set(checksums) != set(manifest["files"]):
        return False  # written before checksums were recorded
    for rel, size in manifest["files"].items():
        f = root / rel
        if not f.is_file() or f.stat().st_size != size:
            return False
    for rel, digest in checksums.items():
        if file_checksum(root / rel) != digest:
            log.warning("%s: checksum mismatch (damaged file)", root / rel)
            return False
    return True


def _check_replaceable(root: Path) -> dict[str, Any] | None:
    """What may be removed from an existing ``root``: its old manifest, or ``None`` (nothing listed).

    Raises:
        UserError: ``root`` is a file, or a non-empty folder that is not a cache.
    """
    if not root.exists():
        return None
    if not root.is_dir():
        raise UserError(f"{root}: data folder is a file, not a folder")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.exists():
        if any(root.iterdir()):
            raise UserError(
                f"{root}: data folder is not empty and holds no {MANIFEST_NAME} (not a multiattn data "
                "cache); nothing was deleted: choose a new or empty folder"
            )
        return None
    manifest = read_manifest(root)
    if manifest is None:
        log.warning("%s: damaged %s; files of the same names will be replaced", root, MANIFEST_NAME)
        return None
    if not _is_cache_manifest(manifest):
        raise UserError(
            f"{manifest_path}: not a multiattn data cache manifest; nothing was deleted: choose a new "
            "or empty folder"
        )
    return manifest


def cached_generate(
    root: str | Path,
    params: dict[str, Any],
    generate: Callable[[Path], dict[str, Any] | None],
) -> dict[str, Any]:
    """Return the manifest of the cache in ``root``, generating it first when invalid.

    Args:
        root: cache directory (e.g. ``data/stn/cluttered``).
        params: everything the output depends on (seed, sizes, generator version). JSON-able.
        generate: ``generate(folder)`` writes the files into the empty ``folder`` (a staging
            folder, moved to ``root`` when complete) and returns extra manifest fields (e.g.
            split sizes). Every file it leaves is listed in the manifest with its size and checksum.

    Returns:
        The manifest: ``{"params", "files", "checksums", **extra}``.

    Raises:
        UserError: ``root`` is a non-empty folder that is not a cache, a file, or not writable.
    """
    root = Path(root)
    if manifest_is_valid(root, params):
        return read_manifest(root)  # type: ignore[return-value]
    old = _check_replaceable(root)
    if root.exists():
        log.warning("regenerating %s (cache missing, damaged or made with other parameters)", root)
    with staging_folder(root, "generating") as staging:
        extra = generate(staging) or {}
        files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
        names = [p.relative_to(staging).as_posix() for p in files]
        manifest = {
            "params": params,
            "files": {n: p.stat().st_size for n, p in zip(names, files)},
            "checksums": {n: file_checksum(p) for n, p in zip(names, files)},
            **extra,
        }
        write_json(staging / MANIFEST_NAME, manifest, indent=1)
        _install(staging, root, old, names)
    return manifest


def _install(staging: Path, root: Path, old: dict[str, Any] | None, names: list[str]) -> None:
    """Move the staged cache (its manifest last) into ``root``, removing what the old manifest listed.

    While files move, ``root`` holds a provisional manifest listing every file that may be there
    (old and new) with impossible parameters: a run killed meanwhile leaves a folder the next run
    recognises as an invalid cache and cleans, never one it must refuse.
    """
    if root.is_dir():
        old_files = [p.relative_to(root).as_posix() for p in _listed_files(root, old)] if old else []
        provisional = {"params": None, "files": dict.fromkeys([*old_files, *names], -1)}
        write_json(root / MANIFEST_NAME, provisional)
        for rel in old_files:
            with contextlib.suppress(FileNotFoundError):
                (root / rel).unlink()
        for folder in sorted({(root / rel).parent for rel in old_files}, key=lambda p: -len(p.parts)):
            if folder != root:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when emptied: a folder holding anything else stays
        if [p.name for p in root.iterdir()] == [MANIFEST_NAME]:
            (root / MANIFEST_NAME).unlink()
            root.rmdir()
    if not root.exists():
        os.replace(staging, root)
        return
    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    os.replace(staging / MANIFEST_NAME, root / MANIFEST_NAME)
