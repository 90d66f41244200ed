"""Spatial transformer benchmark: cluttered-digit error with and without the transformer, region
IoU, training throughput fp32 vs bf16-mixed, ``classify`` inference throughput.

Run: ``.venv/bin/python -m benchmarks.bench_stn [--quick] [--minutes M] [--threads N]``; writes
``benchmarks/results/stn.json`` and ``benchmarks/results/stn.md`` (``stn_quick.*`` with ``--quick``).

1. Training throughput (images/s, forward + backward + AdamW step of the default config's model
   on real cluttered batches), fp32 and ``bf16-mixed`` autocast measured in alternating rounds,
   median of each.
2. Training: ``multiattn fit -c configs/stn.yaml`` with the transformer (label-only by default), the
   same config with ``--model.model.transformer.enabled false`` (the baseline) and, with
   ``--box-loss W``, with ``--model.box_loss.weight W`` (the box-guided variant), all in parallel subprocesses with
   ``--threads`` threads each, for the config's own ``max_epochs`` (``--epochs`` another count),
   with ``--minutes`` as ``--trainer.max_time``, a guard: the runs share the cores, so their times
   are not the config's time to train alone (``time multiattn fit -c configs/stn.yaml``, docs/stn.md).
   ``--quick`` trains the tiny config instead.
3. Test split of the embedded cluttered data: top-1 error, mean IoU of the sampled region with the
   digit's box, share with IoU > 0.5 (best checkpoint of each run).
4. ``classify`` inference: images/s through :func:`multiattn.tasks.stn.app.classify_files` on PNG files
   (decode + convert + model), and the model alone on batches of 64.

JSON keys: ``config``, ``threads``, ``load_average`` (start, end), ``budget_minutes``,
``training_throughput = {fp32, bf16_mixed, bf16_speedup}`` (images/s),
``runs[name] = {use_transformer, epochs, train_minutes, checkpoint, test_error, test_iou,
test_iou50, test_images}`` for ``name`` in ``stn`` / ``baseline`` / ``stn_box_loss``,
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

from benchmarks.output import shown_path, write_results
from multiattn.runtime import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "outputs" / "bench_stn"


def _config_copy(config: Path, name: str, folder: Path) -> Path:
    """The config with its output paths moved under ``folder/<name>``.

    ``folder`` is new for every benchmark run: Lightning names a checkpoint ``best-v1.ckpt``
    when ``best.ckpt`` exists already, so a reused folder would score an earlier run's model.
    """
    text = config.read_text()
    out = (folder / name).relative_to(ROOT).as_posix()
    text = text.replace("outputs/stn_tiny", out).replace("outputs/stn", out)
    path = folder / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _model_and_data(config: Path, *, quick: bool, variety: str | None = None):
    from multiattn.tasks.stn.data import STNDataModule
    from multiattn.tasks.stn.system import STNSystem

    spec = yaml.safe_load(config.read_text())
    data_args = dict(spec["data"]["init_args"])
    if variety is not None:
        data_args["variety"] = variety
    data = STNDataModule(**data_args)
    data.prepare_data()
    data.setup("fit")
    system = STNSystem(**spec["model"]["init_args"])
    return system, data


def training_throughput(
    config: Path, *, rounds: int, steps: int, variety: str | None = None
) -> dict[str, float]:
    """Images/s of a training step in fp32 and bf16 autocast, alternating rounds (median)."""
    system, data = _model_and_data(config, quick=False, variety=variety)
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


def evaluation_splits(
    data, *, variety: str, ood_size: int, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """The splits every checkpoint is scored on, as arrays ``images (M, C, C)``, ``labels``, ``boxes``.

    ``<variety>_val``: the data module's validation split (the split settings are chosen on; the
    out-of-generator split never chooses anything); ``<variety>_test``: its test split (the
    generator the model trained with: ``standard_test`` or ``broad_test``); ``standard_test`` also when the data are the broad set
    (so both varieties are compared on the same images); ``out_of_generator``: ``ood_size``
    digits of :mod:`multiattn.tasks.stn.sources.outside` in the held-out font families, on the same canvas
    (left out, with a message, when those fonts are not installed); ``out_of_generator_clean``:
    the same digits, places and clutter on a black, noiseless ground, which separates what the
    fonts and the recipe cost from what a grey, noisy ground costs.
    """
    from multiattn.tasks.stn.data import STNDataModule
    from multiattn.tasks.stn.sources.outside import held_out_fonts, outside_digits

    def arrays(dataset) -> dict[str, np.ndarray]:
        return {
            "images": np.asarray(dataset.images),
            "labels": np.asarray(dataset.labels),
            "boxes": np.asarray(dataset.boxes),
        }

    splits = {
        f"{variety}_val": arrays(data.datasets["val"]),
        f"{variety}_test": arrays(data.datasets["test"]),
    }
    if variety != "standard":
        hp = dict(data.hparams)
        hp.update(variety="standard", progress=False)
        standard = STNDataModule(**hp)
        standard.setup("test")
        splits["standard_test"] = arrays(standard.datasets["test"])
    faces = held_out_fonts()
    if not faces:
        print(
            "bench_stn: out-of-generator split left out: no Liberation / FreeFont fonts found "
            "(make fonts installs fonts-liberation and fonts-freefont-ttf)",
            file=sys.stderr,
        )
    elif ood_size > 0:
        canvas = int(splits[f"{variety}_test"]["images"].shape[-1])
        scale = canvas / 60.0  # the recipe's digit sizes are for the 60x60 cluttered canvas
        for name, ground in (
            ("out_of_generator", {}),
            ("out_of_generator_clean", {"background": (0.0, 0.0), "noise": (0.0, 0.0)}),
        ):
            made = outside_digits(
                faces,
                num_samples=ood_size,
                seed=seed,
                canvas=canvas,
                digit_height=(14.0 * scale, 30.0 * scale),
                **ground,
            )
            splits[name] = {"images": made.images, "labels": made.labels, "boxes": made.boxes}
    return splits


@torch.inference_mode()
def evaluate(checkpoint: Path, splits: dict[str, dict[str, np.ndarray]], *, batch_size: int = 256) -> dict:
    """Accuracy and region IoU of a checkpoint on each split.

    IoU is exact: the sampled quadrilateral (the four output corners mapped through theta) is
    clipped by the digit's box (:func:`multiattn.stn.region_iou` with ``exact=True``), not its
    enclosing rectangle, which would flatter rotated or sheared regions.

    Returns:
        ``{split: {accuracy, error, images[, mean_iou, iou50]}}``.
    """
    from multiattn.checkpoint import load_system
    from multiattn.stn import region_iou
    from multiattn.tasks.stn.system import STNSystem

    system = load_system(STNSystem, checkpoint, log_overlays=False)
    results = {}
    for name, split in splits.items():
        correct, ious, widths, heights, digit_heights = 0, [], [], [], []
        for start in range(0, len(split["labels"]), batch_size):
            images = (
                torch.from_numpy(np.array(split["images"][start : start + batch_size])).float()[:, None]
                / 255.0
            )
            labels = torch.from_numpy(np.array(split["labels"][start : start + batch_size]))
            out = system.predict_step(images)  # (B, 1, H, W) in
            correct += int((out["label"] == labels).sum())
            if out["corners"] is not None:
                boxes = torch.from_numpy(np.array(split["boxes"][start : start + batch_size]))
                corners = out["corners"].float()
                ious.append(region_iou(corners, boxes, exact=True))
                # The region's extent over the digit's: does its size follow the digit's?
                extent = corners.amax(dim=1) - corners.amin(dim=1)
                widths.append(extent[:, 0] / (boxes[:, 2] - boxes[:, 0]).float())
                heights.append(extent[:, 1] / (boxes[:, 3] - boxes[:, 1]).float())
                digit_heights.append((boxes[:, 3] - boxes[:, 1]).float())
        total = len(split["labels"])
        result = {
            "accuracy": round(correct / total, 5),
            "error": round(1 - correct / total, 5),
            "images": total,
        }
        if ious:
            iou, height_ratio = torch.cat(ious), torch.cat(heights)
            result.update(
                mean_iou=round(float(iou.mean()), 4),
                iou50=round(float((iou > 0.5).float().mean()), 4),
                region_width_ratio=round(float(torch.cat(widths).median()), 3),
                region_height_ratio=round(float(height_ratio.median()), 3),
                by_height=_by_digit_height(
                    iou, height_ratio, torch.cat(digit_heights), canvas=split["images"].shape[-1]
                ),
            )
        results[name] = result
    return results


# Digit heights (ink px on the 60x60 canvas) at which IoU and the region's size are broken down,
# and the names of the bins they bound.
HEIGHT_BINS = (14, 18, 22, 26, 30)
HEIGHT_BIN_NAMES = (
    f"<{HEIGHT_BINS[0]}",
    *(f"{low}-{high}" for low, high in zip(HEIGHT_BINS, HEIGHT_BINS[1:])),
    f">={HEIGHT_BINS[-1]}",
)


def _by_digit_height(
    iou: torch.Tensor, height_ratio: torch.Tensor, digit_height: torch.Tensor, *, canvas: int
):
    """IoU > 0.5 share and the median region / box height per bin of the digit's height: does the
    region's size follow the digit's? Edges are :data:`HEIGHT_BINS` scaled to ``canvas``."""
    edges = [0.0, *(edge * canvas / 60.0 for edge in HEIGHT_BINS), float("inf")]
    rows = []
    for name, low, high in zip(HEIGHT_BIN_NAMES, edges, edges[1:]):
        inside = (digit_height >= low) & (digit_height < high)
        if inside.any():
            rows.append(
                {
                    "height": name,
                    "images": int(inside.sum()),
                    "iou50": round(float((iou[inside] > 0.5).float().mean()), 4),
                    "region_height_ratio": round(float(height_ratio[inside].median()), 3),
                }
            )
    return rows


@torch.inference_mode()
def inference_throughput(checkpoint: Path, data, *, files: int) -> dict[str, float]:
    """``classify`` on PNG files (decode + convert + model) and the bare model, images/s."""
    from PIL import Image

    from multiattn.checkpoint import load_system
    from multiattn.tasks.stn.app import classify_files
    from multiattn.tasks.stn.system import STNSystem

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


_SPLIT_TITLES = {
    "standard_val": "standard validation",
    "varied_val": "varied validation",
    "broad_val": "broad validation",
    "standard_test": "standard test",
    "varied_test": "varied test",
    "broad_test": "broad test",
    "out_of_generator": "out-of-generator",
    "out_of_generator_clean": "out-of-generator, black ground",
}


def _markdown(result: dict) -> str:
    setting = f"Config `{result['config']}`, digits `{result['variety']}`"
    if "threads" in result:
        setting += (
            f", {result['threads']} thread(s) per run, load average {result['load_average'][0]:.1f} -> "
            f"{result['load_average'][1]:.1f} (the runs share the cores), time cap "
            f"{result['budget_minutes']} min"
        )
    lines = ["# Spatial transformer benchmark", "", setting + ".", ""]
    splits = [name for name in _SPLIT_TITLES if any(name in run["splits"] for run in result["runs"].values())]
    header = "| run | epochs | train min |"
    rule = "| --- | ---: | ---: |"
    for name in splits:
        title = _SPLIT_TITLES[name]
        header += f" {title} accuracy | {title} mean IoU | {title} IoU > 0.5 |"
        rule += " ---: | ---: | ---: |"
    lines += [header, rule]
    for name, run in result["runs"].items():
        row = f"| {name} | {run.get('epochs', '-')} | {run.get('train_minutes', '-')} |"
        for split in splits:
            scores = run["splits"].get(split)
            if scores is None:
                row += " - | - | - |"
                continue
            iou = f"{scores['mean_iou']:.3f}" if "mean_iou" in scores else "-"
            iou50 = f"{100 * scores['iou50']:.1f}%" if "iou50" in scores else "-"
            row += f" {100 * scores['accuracy']:.2f}% | {iou} | {iou50} |"
        lines.append(row)
    sized = [
        name
        for name, run in result["runs"].items()
        if any("region_width_ratio" in s for s in run["splits"].values())
    ]
    if sized:
        lines += [
            "",
            "Median region extent over the digit's box (width / height; 1 = the region spans the digit):",
            "",
        ]
        lines += [
            "| run |" + "".join(f" {_SPLIT_TITLES[name]} |" for name in splits),
            "| --- |" + " ---: |" * len(splits),
        ]
        for name in sized:
            cells = []
            for split in splits:
                scores = result["runs"][name]["splits"].get(split, {})
                ratio = (scores.get("region_width_ratio"), scores.get("region_height_ratio"))
                cells.append(f"{ratio[0]:.2f} / {ratio[1]:.2f}" if None not in ratio else "-")
            lines.append(f"| {name} |" + "".join(f" {cell} |" for cell in cells))
    binned = [
        (name, split)
        for name, run in result["runs"].items()
        for split in splits
        if run["splits"].get(split, {}).get("by_height")
    ]
    if binned:
        heights = HEIGHT_BIN_NAMES
        lines += [
            "",
            "By the digit's height (ink px on a 60-px canvas): IoU > 0.5 share, median region / box "
            "height, images:",
            "",
            "| run | split |" + "".join(f" {h} |" for h in heights),
            "| --- | --- |" + " ---: |" * len(heights),
        ]
        for name, split in binned:
            cells = {row["height"]: row for row in result["runs"][name]["splits"][split]["by_height"]}
            row = f"| {name} | {_SPLIT_TITLES[split]} |"
            for h in heights:
                cell = cells.get(h)
                row += (
                    f" {100 * cell['iou50']:.1f}% / {cell['region_height_ratio']:.2f} / {cell['images']} |"
                    if cell
                    else " - |"
                )
            lines.append(row)
    lines += [
        "",
        "In-generator splits: the embedded validation (where settings are chosen) and test splits of the "
        "standard, varied or broad digits. IoU is exact: the "
        "sampled quadrilateral clipped by the digit's box. The out-of-generator split "
        f"({result.get('out_of_generator_images', 0)} images) is typeset with Pillow in the held-out "
        "Liberation / FreeFont families with stroke clutter (tasks/stn/sources/outside.py).",
    ]
    if "training_throughput" in result:
        tp, inf = result["training_throughput"], result["inference"]
        lines += [
            "",
            "| training throughput | images/s |",
            "| --- | ---: |",
            f"| fp32 | {tp['fp32']} |",
            f"| bf16-mixed | {tp['bf16_mixed']} ({tp['bf16_speedup']}x) |",
            "",
            f"`classify` inference: {inf['classify_files_per_s']} files/s over {inf['files']} PNGs (decode + "
            f"convert + model); model alone {inf['model_images_per_s']} images/s.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="bench_stn", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config, seconds (a smoke run)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=45.0,
        help="time cap per training run (wall clock; a guard: the runs share the cores)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per run (default: the config's max_epochs, the schedule a user trains)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="train only the transformer model")
    parser.add_argument(
        "--box-loss",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="also train the transformer with the auxiliary box loss at this weight (run stn_box_loss)",
    )
    parser.add_argument(
        "--variety",
        choices=("standard", "varied", "broad"),
        default=None,
        help="embedded digits to train on (default: the config's)",
    )
    parser.add_argument(
        "--ood-size", type=int, default=None, help="out-of-generator images (default 2000, --quick 200)"
    )
    parser.add_argument(
        "--evaluate",
        action="append",
        default=[],
        metavar="NAME=CKPT",
        help="score existing checkpoints instead of training (repeatable); writes stn_eval.{json,md}",
    )
    parser.add_argument(
        "--results-name",
        default=None,
        metavar="STEM",
        help="file stem of the results under benchmarks/results (default stn, stn_eval with --evaluate)",
    )
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the multiattn command does (multiattn/runtime.py)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    torch.set_num_threads(args.threads)
    config = ROOT / "configs" / ("stn_tiny.yaml" if args.quick else "stn.yaml")
    minutes = 1.0 if args.quick else args.minutes
    ood_size = args.ood_size if args.ood_size is not None else (200 if args.quick else 2000)
    spec = yaml.safe_load(config.read_text())
    variety = args.variety or spec["data"]["init_args"].get("variety", "standard")
    variety_args = [] if args.variety is None else ["--data.init_args.variety", args.variety]
    load_start = os.getloadavg()[0]

    if args.evaluate:
        checkpoints = {}
        for item in args.evaluate:
            name, _, path = item.partition("=")
            if not path or not Path(path).is_file():
                print(
                    f"bench_stn: --evaluate {item}: expected NAME=CKPT with an existing checkpoint",
                    file=sys.stderr,
                )
                return 2
            checkpoints[name] = Path(path)
        _, data = _model_and_data(config, quick=args.quick, variety=variety)
        splits = evaluation_splits(data, variety=variety, ood_size=ood_size)
        runs = {
            name: {"checkpoint": shown_path(path), "splits": evaluate(path, splits)}
            for name, path in checkpoints.items()
        }
        result = {
            "config": str(config.relative_to(ROOT)),
            "variety": variety,
            "out_of_generator_images": len(splits.get("out_of_generator", {}).get("labels", [])),
            "runs": runs,
        }
        _write(result, args.results_name or "stn_eval")
        return 0

    throughput = training_throughput(
        config, rounds=2 if args.quick else 3, steps=3 if args.quick else 10, variety=variety
    )
    print(f"training throughput: {throughput}", flush=True)

    names = {"stn": variety_args}
    if not args.skip_baseline:
        names["baseline"] = [*variety_args, "--model.model.transformer.enabled", "false"]
    if args.box_loss > 0:
        names["stn_box_loss"] = [*variety_args, "--model.box_loss.weight", str(args.box_loss)]
    # The config's own schedule (a curriculum is laid out over it); --minutes only caps a run.
    epochs = args.epochs or int(spec["trainer"]["max_epochs"])
    folder = WORK / time.strftime("%Y%m%d-%H%M%S")  # a new folder per run (see _config_copy)
    processes = {}
    for name, extra in names.items():
        copy = _config_copy(config, name, folder)
        processes[name] = (
            *_launch(
                copy,
                epochs=epochs,
                minutes=minutes,
                threads=args.threads,
                extra=extra,
                log=folder / f"{name}.log",
            ),
            time.time(),
        )
    runs = {}
    _, data = _model_and_data(config, quick=args.quick, variety=variety)
    splits = evaluation_splits(data, variety=variety, ood_size=ood_size)
    for name, (process, handle, start) in processes.items():
        code = process.wait()
        handle.close()
        if code != 0:
            print(
                f"bench_stn: training {name} failed (exit {code}); see {folder / f'{name}.log'}",
                file=sys.stderr,
            )
            return 1
        train_minutes = (time.time() - start) / 60
        checkpoint_dir = folder / name / "checkpoints"
        best = checkpoint_dir / "best.ckpt"
        checkpoint = best if best.exists() else checkpoint_dir / "last.ckpt"
        runs[name] = {
            "use_transformer": name != "baseline",
            "epochs": epochs,
            "train_minutes": round(train_minutes, 2),
            "checkpoint": shown_path(checkpoint),
            "splits": evaluate(checkpoint, splits),
        }
        print(f"{name}: {runs[name]}", flush=True)
    inference = inference_throughput(ROOT / runs["stn"]["checkpoint"], data, files=64 if args.quick else 512)
    result = {
        "config": str(config.relative_to(ROOT)),
        "variety": variety,
        "threads": args.threads,
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "budget_minutes": minutes,
        "training_throughput": throughput,
        "out_of_generator_images": len(splits.get("out_of_generator", {}).get("labels", [])),
        "runs": runs,
        "inference": inference,
        "targets": {
            "test_error_max": 0.01,
            "iou50_min": 0.95,
            "out_of_generator_accuracy_min": 0.98,
            "out_of_generator_iou50_min": 0.9,
            "train_minutes_max": 15,
        },
    }
    stem = "stn_quick" if args.quick else "stn"
    _write(result, args.results_name or (stem if variety == "standard" else f"{stem}_{variety}"))
    return 0


def _write(result: dict, stem: str) -> None:
    write_results(stem, result, _markdown(result))


if __name__ == "__main__":
    sys.exit(main())
