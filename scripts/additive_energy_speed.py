"""The additive attention score ``v^T tanh(K + q)``: PyTorch's ``tanh`` form against the core's
``multiattn.attention.additive.additive_energy`` (``2 v^T sigmoid(2x) - sum(v)``, cache-sized
chunks, keys shared by groups of rows), side by side in one run.

Shapes are those of the captioning beam search (a 12 x 12 grid, attention size 128, beam 5): one
image (5 rows) and 64 images (320 rows). "per-row keys" gives every row its own copy of the keys,
as a beam search without shared memory would; "shared keys" passes one key tensor per image.

Usage::

    python scripts/additive_energy_speed.py [--threads 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from multiattn.attention.additive import additive_energy  # noqa: E402


def tanh_form(keys: torch.Tensor, queries: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(torch.tanh(keys + queries.unsqueeze(1)), weight).squeeze(-1)


def milliseconds(fn, *args, repeats: int) -> float:
    fn(*args)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn(*args)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cells", type=int, default=144)
    parser.add_argument("--attn-dim", type=int, default=128)
    parser.add_argument("--beam", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weight = torch.randn(1, args.attn_dim)
    print(f"threads {args.threads}, grid cells {args.cells}, attention dim {args.attn_dim}, beam {args.beam}")
    print("| images | rows | tanh form ms | additive_energy, per-row keys ms | shared keys ms | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    with torch.inference_mode():
        for images in (1, 64):
            rows = images * args.beam
            shared_keys = torch.randn(images, args.cells, args.attn_dim)
            row_keys = shared_keys.repeat_interleave(args.beam, dim=0)  # (rows, S, A)
            queries = torch.randn(rows, args.attn_dim)
            reference = tanh_form(row_keys, queries, weight)
            for keys in (row_keys, shared_keys):
                error = (additive_energy(keys, queries, weight) - reference).abs().max().item()
                assert error < 1e-3, f"additive_energy differs from the tanh form by {error}"
            base = milliseconds(tanh_form, row_keys, queries, weight, repeats=args.repeats)
            per_row = milliseconds(additive_energy, row_keys, queries, weight, repeats=args.repeats)
            shared = milliseconds(additive_energy, shared_keys, queries, weight, repeats=args.repeats)
            print(f"| {images} | {rows} | {base:.3f} | {per_row:.3f} | {shared:.3f} | {base / shared:.1f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
