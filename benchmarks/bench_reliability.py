"""What the data-safety checks cost: cache checksums, and memory of reading big images.

Run: ``.venv/bin/python -m benchmarks.bench_reliability [--quick]``. Writes
``results/reliability.json`` and ``results/reliability.md``.

1. Checksum throughput over a file the size of the captioning default cache (10,000 + 500 + 1,000
   scenes of 96x96x3 bytes; ``--quick``: a tenth): CRC-32 (``multiattn.datacache.file_checksum``,
   what a cache verifies on every open) beside BLAKE2b-128, best of 3, file in the page cache.
2. Peak memory of turning one big image into the classifier's 60x60 input, each case in a fresh
   subprocess (Linux: the peak resident size ``VmHWM``, reset through ``/proc/self/clear_refs``
   after the imports, minus the resident size then): the full decode (what the readers did before
   reducing while decoding) against :func:`multiattn.imageio.read_image` with the model's size, for
   a 24-megapixel JPEG and a 48-megapixel PNG (``--quick``: 6 and 12 megapixels).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.output import write_results

ROOT = Path(__file__).resolve().parents[1]
SCENE_BYTES = 96 * 96 * 3 * (10_000 + 500 + 1_000)

_MEASURE = """
import json, sys
from PIL import Image
from multiattn.tasks.stn.sources.images import prepare_image, read_image


def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))  # kB


path, how = sys.argv[1], sys.argv[2]
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets the peak resident size (VmHWM) to the current one
before = status("VmRSS")
if how == "reduced":
    image = read_image(path, (60, 60))
else:
    with Image.open(path) as opened:
        opened.load()
        image = opened.copy()
prepare_image(image, channels=1, size=(60, 60), light_on_dark=True)
print(json.dumps({"decoded": list(image.size), "peak_mib": round((status("VmHWM") - before) / 1024, 1)}))
"""


def _best_seconds(function, path: Path, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function(path)
        best = min(best, time.perf_counter() - started)
    return best


def _blake2b(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(folder: Path, size: int) -> dict[str, Any]:
    from multiattn.datacache import file_checksum

    path = folder / "cache.bin"
    with open(path, "wb") as handle:
        for _ in range(0, size, 1 << 24):
            handle.write(os.urandom(min(1 << 24, size - handle.tell())))
    file_checksum(path)  # into the page cache
    crc, blake = _best_seconds(file_checksum, path), _best_seconds(_blake2b, path)
    return {
        "bytes": size,
        "crc32_seconds": round(crc, 4),
        "blake2b_seconds": round(blake, 4),
        "crc32_mb_per_s": round(size / crc / 1e6),
        "blake2b_mb_per_s": round(size / blake / 1e6),
    }


def image_memory(folder: Path, scale: float) -> list[dict[str, Any]]:
    import numpy as np
    from PIL import Image

    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    files = {
        "photo.jpg": (round(6000 * scale), round(4000 * scale), {"quality": 90}),
        "scan.png": (round(8000 * scale), round(6000 * scale), {"compress_level": 1}),
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rows = []
    for name, (width, height, options) in files.items():
        path = folder / name
        base.resize((width, height), Image.BILINEAR).save(path, **options)
        for how in ("full", "reduced"):
            run = subprocess.run(
                [sys.executable, "-c", _MEASURE, str(path), how],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(run.stdout)
            rows.append({"file": name, "size": [width, height], "decode": how, **measured})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the cache, a quarter of the pixels")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        sums = checksums(Path(folder), SCENE_BYTES // 10 if args.quick else SCENE_BYTES)
        memory = image_memory(Path(folder), 0.5 if args.quick else 1.0)
    result = {"quick": args.quick, "checksums": sums, "image_memory": memory}
    lines = [
        "# Data-safety costs",
        "",
        f"Command: `python -m benchmarks.bench_reliability{' --quick' if args.quick else ''}`",
        "",
        "| checksum over | CRC-32 (used) | BLAKE2b-128 |",
        "|---|---|---|",
        f"| {sums['bytes'] / 1e6:.0f} MB (captioning default cache) | {sums['crc32_seconds']:.3f} s "
        f"({sums['crc32_mb_per_s']} MB/s) | {sums['blake2b_seconds']:.3f} s ({sums['blake2b_mb_per_s']} MB/s) |",
        "",
        "| image | decode | decoded size | peak memory |",
        "|---|---|---|---|",
    ]
    for row in memory:
        size, decoded = "×".join(map(str, row["size"])), "×".join(map(str, row["decoded"]))
        lines.append(f"| {row['file']} {size} | {row['decode']} | {decoded} | {row['peak_mib']:.0f} MiB |")
    write_results("reliability", result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
