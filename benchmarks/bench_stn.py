"""Spatial transformer benchmark: cluttered-digit error with and without the transformer, region
IoU, training throughput fp32 vs bf16-mixed, ``classify`` inference throughput.

Run: ``.venv/bin/python -m benchmarks.bench_stn [--quick] [--minutes M] [--threads N]``; writes
``benchmarks/results/stn.json`` and ``benchmarks/results/stn.md`` (``stn_quick.*`` with ``--quick``).

1. Training throughput (images/s, forward + backward + AdamW step of the default config's model
   on real cluttered batches), fp32 and ``bf16-mixed`` autocast measured in alternating rounds,
   median of each.
2. Training: ``multiattn fit -c configs/stn.yaml`` with the transformer and the same config with
   ``--model.model.transformer.enabled false`` (the baseline), both in parallel subprocesses with
   ``--threads`` threads each, inside a wall-clock budget of ``--minutes``: the number of epochs
   is set from the measured throughput so the one-cycle schedule completes, and
   ``--trainer.max_time`` is the hard stop. ``--quick`` trains the tiny config instead.
3. Test split of the embedded cluttered data: top-1 error, mean IoU of the sampled region with the
   digit's box, share with IoU > 0.5 (best checkpoint of each run).
4. ``classify`` inference: images/s through :func:`tasks.stn.app.classify_files` on PNG files
   (decode + convert + model), and the model alone on batches of 64.

JSON keys: ``config``, ``threads``, ``load_average`` (start, end), ``budget_minutes``,
``training_throughput = {fp32, bf16_mixed, bf16_speedup}`` (images/s),
``runs[name] = {use_transformer, epochs, train_minutes, checkpoint, test_error, test_iou,
test_iou50, test_images}`` for ``name`` in ``stn`` / ``baseline``,
``inference = {files, classify_files_per_s, model_images_per_s}``, ``targets`` (the issue's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from multiattn.runtime import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "outputs" / "bench_stn"


def _config_copy(config: Path, name: str) -> Path:
    """The config with its output paths moved under outputs/bench_stn/<name>."""
    text = config.read_text()
    out = f"outputs/bench_stn/{name}"
    text = text.replace("outputs/stn_tiny", out).replace("outputs/stn", out)
    path = WORK / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _model_and_data(config: Path, *, quick: bool):
    from tasks.stn.data import STNDataModule
    from tasks.stn.system import STNSystem

    spec = yaml.safe_load(config.read_text())
    data_args = dict(spec["data"]["init_args"])
    data = STNDataModule(**data_args)
    data.prepare_data()
    data.setup("fit")
    system = STNSystem(**spec["model"]["init_args"])
    return system, data


def training_throughput(config: Path, *, rounds: int, steps: int) -> dict[str, float]:
    """Images/s of a training step in fp32 and bf16 autocast, alternating rounds (median)."""
    system, data = _model_and_data(config, quick=False)
    model = system.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = iter(data.train_dataloader())
    batches = [next(loader) for _ in range(steps)]
    rates: dict[str, list[float]] = {"fp32": [], "bf16_mixed": []}

    def run(bf16: bool) -> float:
        start = time.perf_counter()
        count = 0
        for batch in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(batch.images).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count += len(batch)
        return count / (time.perf_counter() - start)

    run(False), run(True)  # warm-up (oneDNN kernels)
    for _ in range(rounds):
        rates["fp32"].append(run(False))
        rates["bf16_mixed"].append(run(True))
    fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16_mixed"])
    return {"fp32": round(fp32, 1), "bf16_mixed": round(bf16, 1), "bf16_speedup": round(bf16 / fp32, 3)}


def _launch(config: Path, *, epochs: int, minutes: float, threads: int, extra: list[str], log: Path):
    env = {**os.environ, "JSONARGPARSE_DEPRECATION_WARNINGS": "off", "OMP_NUM_THREADS": str(threads)}
    seconds = int(minutes * 60)
    command = [
        sys.executable, "-m", "multiattn.cli", "fit", "-c", str(config),
        "--trainer.max_epochs", str(epochs),
        "--trainer.max_time", f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}",
        "--trainer.enable_progress_bar", "false", *extra,
    ]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "w")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT), handle


@torch.inference_mode()
def evaluate(checkpoint: Path, data) -> dict[str, float]:
    """Top-1 error and region IoU of a checkpoint on the data module's test split."""
    from multiattn.checkpoint import load_system
    from multiattn.stn import region_iou
    from tasks.stn.system import STNSystem

    system = load_system(STNSystem, checkpoint)
    wrong, total, ious = 0, 0, []
    for batch in data.test_dataloader():
        out = system.predict_step(batch)
        wrong += int((out["label"] != batch.labels).sum())
        total += len(batch)
        if out["corners"] is not None and batch.boxes is not None:
            ious.append(region_iou(out["corners"], batch.boxes))
    result = {"test_error": round(wrong / total, 5), "test_images": total}
    if ious:
        iou = torch.cat(ious)
        result.update(
            test_iou=round(float(iou.mean()), 4), test_iou50=round(float((iou > 0.5).float().mean()), 4)
        )
    return result


@torch.inference_mode()
def inference_throughput(checkpoint: Path, data, *, files: int) -> dict[str, float]:
    """``classify`` on PNG files (decode + convert + model) and the bare model, images/s."""
    from PIL import Image

    from multiattn.checkpoint import load_system
    from tasks.stn.app import classify_files
    from tasks.stn.system import STNSystem

    system = load_system(STNSystem, checkpoint, log_overlays=False)
    images = data.datasets["test"].images
    folder = WORK / "classify_inputs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(min(files, len(images))):
        path = folder / f"{index:05d}.png"
        Image.fromarray(np.asarray(images[index])).save(path)
        paths.append(path)
    list(classify_files(system, paths[:8], batch_size=8))  # warm-up
    start = time.perf_counter()
    records = list(classify_files(system, paths, batch_size=64))
    per_file = len(records) / (time.perf_counter() - start)
    batch = torch.from_numpy(np.array(images[:64])).float()[:, None] / 255.0  # (B, H, W) -> (B, 1, H, W)
    system.predict_step(batch)
    start, repeats = time.perf_counter(), 5
    for _ in range(repeats):
        system.predict_step(batch)
    model_rate = repeats * len(batch) / (time.perf_counter() - start)
    return {
        "files": len(records),
        "classify_files_per_s": round(per_file, 1),
        "model_images_per_s": round(model_rate, 1),
    }


def _markdown(result: dict) -> str:
    lines = [
        "# Spatial transformer benchmark",
        "",
        f"Config `{result['config']}`, {result['threads']} thread(s) per run, load average "
        f"{result['load_average'][0]:.1f} -> {result['load_average'][1]:.1f} (2-core machine shared with other jobs), "
        f"training budget {result['budget_minutes']} min.",
        "",
        "| run | epochs | train min | test error | mean IoU | IoU > 0.5 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, run in result["runs"].items():
        iou = f"{run['test_iou']:.3f}" if "test_iou" in run else "-"
        iou50 = f"{100 * run['test_iou50']:.1f}%" if "test_iou50" in run else "-"
        lines.append(
            f"| {name} | {run['epochs']} | {run['train_minutes']:.1f} | {100 * run['test_error']:.2f}% | {iou} | {iou50} |"
        )
    tp, inf = result["training_throughput"], result["inference"]
    lines += [
        "",
        "| training throughput | images/s |",
        "| --- | ---: |",
        f"| fp32 | {tp['fp32']} |",
        f"| bf16-mixed | {tp['bf16_mixed']} ({tp['bf16_speedup']}x) |",
        "",
        f"`classify` inference: {inf['classify_files_per_s']} files/s over {inf['files']} PNGs (decode + convert + "
        f"model); model alone {inf['model_images_per_s']} images/s.",
        "",
        "Targets (issue 3): test error <= 2.0% with the transformer, IoU > 0.5 on >= 90% of test images, "
        "<= 15 minutes of training.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from multiattn.io import atomic_open, write_json

    parser = argparse.ArgumentParser(prog="bench_stn", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config, seconds (a smoke run)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per run (wall clock)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    parser.add_argument("--skip-baseline", action="store_true", help="train only the transformer model")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the multiattn command does (multiattn/runtime.py)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    torch.set_num_threads(args.threads)
    config = ROOT / "configs" / ("stn_tiny.yaml" if args.quick else "stn.yaml")
    minutes = 1.0 if args.quick else args.minutes
    load_start = os.getloadavg()[0]

    throughput = training_throughput(config, rounds=2 if args.quick else 3, steps=3 if args.quick else 10)
    print(f"training throughput: {throughput}", flush=True)

    spec = yaml.safe_load(config.read_text())
    train_size = spec["data"]["init_args"]["train_size"]
    # Both runs share the machine: budget epochs from the per-run rate measured above, with a
    # margin for validation and for the two runs competing.
    precision = spec["trainer"].get("precision", "32-true")
    rate = throughput["bf16_mixed" if "bf16" in str(precision) else "fp32"]
    runs_at_once = 1 if args.skip_baseline else 2
    epochs = max(1, int(minutes * 60 * rate * 0.7 / runs_at_once / train_size))
    names = (
        {"stn": []}
        if args.skip_baseline
        else {"stn": [], "baseline": ["--model.model.transformer.enabled", "false"]}
    )
    processes = {}
    for name, extra in names.items():
        copy = _config_copy(config, name)
        processes[name] = (
            *_launch(
                copy,
                epochs=epochs,
                minutes=minutes,
                threads=args.threads,
                extra=extra,
                log=WORK / f"{name}.log",
            ),
            time.time(),
        )
    runs = {}
    _, data = _model_and_data(config, quick=args.quick)
    for name, (process, handle, start) in processes.items():
        code = process.wait()
        handle.close()
        if code != 0:
            print(
                f"bench_stn: training {name} failed (exit {code}); see {WORK / f'{name}.log'}",
                file=sys.stderr,
            )
            return 1
        train_minutes = (time.time() - start) / 60
        checkpoint_dir = ROOT / "outputs" / "bench_stn" / name / "checkpoints"
        best = checkpoint_dir / "best.ckpt"
        checkpoint = best if best.exists() else checkpoint_dir / "last.ckpt"
        runs[name] = {
            "use_transformer": name == "stn",
            "epochs": epochs,
            "train_minutes": round(train_minutes, 2),
            "checkpoint": str(checkpoint.relative_to(ROOT)),
            **evaluate(checkpoint, data),
        }
        print(f"{name}: {runs[name]}", flush=True)
    inference = inference_throughput(ROOT / runs["stn"]["checkpoint"], data, files=64 if args.quick else 512)
    result = {
        "config": str(config.relative_to(ROOT)),
        "threads": args.threads,
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "budget_minutes": minutes,
        "training_throughput": throughput,
        "runs": runs,
        "inference": inference,
        "targets": {"test_error_max": 0.02, "iou50_min": 0.9, "train_minutes_max": 15},
    }
    stem = "stn_quick" if args.quick else "stn"
    write_json(RESULTS / f"{stem}.json", result, indent=1)
    with atomic_open(RESULTS / f"{stem}.md", "w", encoding="utf-8") as handle:
        handle.write(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
