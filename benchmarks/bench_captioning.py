"""Captioning benchmark: train the default config, score the test split, time decoding and precision.

Measures, side by side in one run (ratios, not absolute claims, on a shared machine):

1. training: ``multiattn fit -c configs/captioning.yaml`` (wall time), unless ``--ckpt`` reuses a
   checkpoint (its Timer callback state then gives the training time);
2. two test splits side by side, free-running beam search: the embedded test split of the
   config's scene style (in-generator) and an out-of-generator split drawn by a second,
   evaluation-only renderer (:mod:`multiattn.tasks.captioning.sources.oog`, matplotlib patches, other
   proportions, colours and backgrounds). On each: BLEU-1..4, METEOR (when Java is present),
   ROUGE-L, CIDEr-D (pycocoevalcap, corpus level, all references), the share of images whose
   every named colour-shape pair is right, the share naming exactly their objects, the
   pointing-game hit rate and the attention mass in the named object's box for object words;
3. beam search (beam 5) on 64 test images: batched vs one image at a time, identical captions,
   for the search alone (from the encoder's grid) and end to end, on 1 and on 2 threads;
4. training throughput (images/s) in fp32 and bf16-mixed (``torch.autocast``, what Lightning's
   ``bf16-mixed`` does), interleaved.

Writes ``benchmarks/results/captioning.json`` and ``captioning.md`` (``--results-name`` another stem). Usage::

    python -m benchmarks.bench_captioning                  # full: trains ~20 min
    python -m benchmarks.bench_captioning --ckpt outputs/captioning/checkpoints/best.ckpt
    python -m benchmarks.bench_captioning --quick          # tiny config, a minute
    python -m benchmarks.bench_captioning --style varied   # train and test on the varied scenes
    python -m benchmarks.bench_captioning --ckpt CKPT --scores-only   # the two test splits only
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.output import shown_path, write_results
from benchmarks.timing import best_of_interleaved
from multiattn.checkpoint import load_checkpoint, load_system
from multiattn.metrics.captioning import caption_metrics, java_available
from multiattn.runtime import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]


def _config(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _train(config: Path, quick_root: Path | None, overrides: list[str]) -> tuple[Path, float]:
    cmd = [sys.executable, "-m", "multiattn.cli", "fit", "-c", str(config), *overrides]
    if quick_root is not None:
        cmd += [
            f"--data.data_dir={quick_root / 'data'}",
            f"--trainer.default_root_dir={quick_root}",
            f"--trainer.logger.init_args.save_dir={quick_root}",
            f"--trainer.callbacks.init_args.dirpath={quick_root / 'checkpoints'}",
        ]
    env = {**os.environ, "JSONARGPARSE_DEPRECATION_WARNINGS": "off"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    callbacks = _config(config)["trainer"]["callbacks"]
    dirpath = next(Path(c["init_args"]["dirpath"]) for c in callbacks if "dirpath" in c.get("init_args", {}))
    dirpath = quick_root / "checkpoints" if quick_root is not None else ROOT / dirpath
    best = dirpath / "best.ckpt"
    return (best if best.exists() else dirpath / "last.ckpt"), wall


def _timer_seconds(ckpt: Path) -> float | None:
    callbacks = load_checkpoint(ckpt).get("callbacks", {})
    for key, state in callbacks.items():
        if "Timer" in key and isinstance(state, dict):
            return float(state.get("time_elapsed", {}).get("train", 0.0)) or None
    return None


def _test_scores(system, loader, image_size: int, *, beam_size: int) -> dict[str, float]:
    from multiattn.tasks.captioning.scoring import SceneScorer

    scorer = SceneScorer((image_size, image_size))
    references, hypotheses = [], []
    for batch in loader:
        for i, caption in enumerate(system.generate(batch.images, beam_size=beam_size)):
            words = system.vocab.decode_words(caption.tokens)
            references.append(batch.references[i])
            hypotheses.append(" ".join(words))
            scorer.add(words, caption.attention, batch.objects[i])
    scores = caption_metrics(references, hypotheses)
    scores.update(scorer.compute())
    scores["test_images"] = float(len(hypotheses))
    return scores


def _oog_loader(root: Path, system, data, *, num_images: int):
    """The out-of-generator split (cached in ``root``), batched like the in-generator test split."""
    from torch.utils.data import DataLoader

    from multiattn.tasks.captioning.datasets import SceneCaptionDataset, collate_captions
    from multiattn.tasks.captioning.sources.oog import generate_oog
    from multiattn.tasks.captioning.sources.scenes import load_scene_split

    generate_oog(root, num_images=num_images, seed=data.seed, image_size=data.image_size)
    images, annotations = load_scene_split(root, "test")
    dataset = SceneCaptionDataset(images, annotations, system.vocab, max_words=data.max_words)
    return DataLoader(
        dataset, batch_size=data.batch_size, collate_fn=functools.partial(collate_captions, pad_id=0)
    )


_SPEED_ROUNDS = 5


def _beam_speed(system, images: torch.Tensor, *, beam_size: int, threads: int) -> list[dict[str, Any]]:
    """Batched vs one image at a time, for the search alone and with the encoder.

    Best of ``_SPEED_ROUNDS`` interleaved rounds (:func:`benchmarks.timing.best_of_interleaved`).
    """
    model = system.model
    torch.set_num_threads(threads)
    features = model.encoder(images)  # (B, C, H, W): the search alone starts from the grid
    stages = {
        "search": (model.decode, features, {}),
        "search_compiled": (model.decode, features, {"compile_attention": True}),
        "end_to_end": (model.generate, images, {}),
    }

    def one_at_a_time(run, inputs: torch.Tensor) -> list:
        return [run(inputs[i : i + 1], beam_size=beam_size)[0] for i in range(inputs.shape[0])]

    rows = []
    for stage, (plain_run, inputs, options) in stages.items():
        run = functools.partial(plain_run, **options)
        for warm in (1, 2):  # warm-up; compiles for one image and for several (sizes 1 and n differ)
            run(inputs[:warm], beam_size=beam_size)
        (batched, batched_s), (single, single_s) = best_of_interleaved(
            functools.partial(run, inputs, beam_size=beam_size),
            functools.partial(one_at_a_time, run, inputs),
            rounds=_SPEED_ROUNDS,
        )
        n = inputs.shape[0]
        rows.append(
            {
                "stage": stage,
                "threads": threads,
                "beam_size": beam_size,
                "images": n,
                "batched_ms_per_image": 1000 * batched_s / n,
                "one_at_a_time_ms_per_image": 1000 * single_s / n,
                "speedup": single_s / batched_s,
                "identical_captions": all(a.tokens == b.tokens for a, b in zip(batched, single)),
            }
        )
    return rows


def _throughput(model_args: dict[str, Any], data, *, steps: int, rounds: int) -> dict[str, float]:
    from multiattn.tasks.captioning.system import CaptioningSystem

    batches = []
    for batch in data.train_dataloader():
        batches.append(batch)
        if len(batches) == steps:
            break
    rates: dict[str, list[float]] = {"fp32": [], "bf16-mixed": []}
    systems = {}
    for name in rates:
        torch.manual_seed(0)
        systems[name] = CaptioningSystem(
            **{**model_args, "vocab": data.vocab.to_list(), "input_size": data.image_size}
        )
        systems[name].train()
    optimizers = {k: torch.optim.AdamW(s.parameters(), lr=1e-3) for k, s in systems.items()}
    for _ in range(rounds):  # interleaved, so both see the same machine load
        for name, system in systems.items():
            images = 0
            start = time.perf_counter()
            for batch in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16-mixed"):
                    loss, _ = system._loss(batch)
                optimizers[name].zero_grad()
                loss.backward()
                optimizers[name].step()
                images += len(batch)
            rates[name].append(images / (time.perf_counter() - start))
    fp32 = statistics.median(rates["fp32"])
    bf16 = statistics.median(rates["bf16-mixed"])
    return {"fp32_images_per_s": fp32, "bf16_mixed_images_per_s": bf16, "bf16_speedup": bf16 / fp32}


_SCORE_ROWS = (
    ("BLEU-4", "bleu_4", "≥ 0.90 / –"),
    ("BLEU-1 / 2 / 3", ("bleu_1", "bleu_2", "bleu_3"), ""),
    ("METEOR", "meteor", ""),
    ("ROUGE-L", "rouge_l", ""),
    ("CIDEr-D", "cider_d", ""),
    ("images with every colour-shape pair right", "pairs_correct", "≥ 0.97 / ≥ 0.95"),
    ("images naming exactly their objects", "objects_exact", ""),
    ("pointing game, object words", "pointing_game", "≥ 0.90 / ≥ 0.90"),
    ("attention mass in the named object's box", "attention_mass", "≥ 0.75 / ≥ 0.75"),
    (
        "pointing game: size / colour / shape words",
        ("pointing_game_size", "pointing_game_colour", "pointing_game_shape"),
        "",
    ),
    (
        "mass in box: size / colour / shape words",
        ("attention_mass_size", "attention_mass_colour", "attention_mass_shape"),
        "",
    ),
    ("images", "test_images", ""),
)


def _score_table(result: dict[str, Any]) -> list[str]:
    """In-generator and out-of-generator scores side by side."""
    s, o = result["test"], result.get("oog")
    style = result.get("style", "plain")
    lines = [
        f"| metric | in-generator test ({style} scenes) | out-of-generator | target (in / out) |",
        "| --- | --- | --- | --- |",
    ]
    for label, key, target in _SCORE_ROWS:
        keys = key if isinstance(key, tuple) else (key,)
        digits = 0 if key == "test_images" else 3
        cells = [
            " / ".join(f"{split[k]:.{digits}f}" for k in keys) if split and keys[0] in split else "n/a"
            for split in (s, o)
        ]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {target} |")
    return lines


def _markdown(result: dict[str, Any]) -> str:
    t = result["throughput"]
    if t is None:  # --scores-only
        header = [
            "# Captioning benchmark (scores only)",
            "",
            f"Command: `{result['command']}`  ",
            f"Checkpoint: `{result['checkpoint']}`; Java: {result['java']}",
            "",
        ]
        return "\n".join([*header, *_score_table(result), ""])
    lines = [
        "# Captioning benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Checkpoint: `{result['checkpoint']}`; threads: {result['threads']}; Java: {result['java']}",
        "",
        "| metric | value | target |",
        "| --- | --- | --- |",
        f"| training time (min) | {result['training_minutes']:.1f} | ≤ 20 |"
        if result["training_minutes"]
        else "| training time | n/a | ≤ 20 min |",
        "",
        *_score_table(result),
        "",
        "| metric | value | target |",
        "| --- | --- | --- |",
        *(
            f"| beam {b['beam_size']}, {b['images']} images, {b['stage'].replace('_', ' ')}, {b['threads']} "
            f"thread{'s' if b['threads'] > 1 else ''}: batched / one at a time ms/image | "
            f"{b['batched_ms_per_image']:.2f} / {b['one_at_a_time_ms_per_image']:.2f} = "
            f"{b['speedup']:.2f}× (identical captions: {b['identical_captions']}) | "
            f"{'≥ 5×' if b['stage'].startswith('search') else ''} |"
            for b in result["beam"]
        ),
        f"| training throughput fp32 (images/s) | {t['fp32_images_per_s']:.1f} | |",
        f"| training throughput bf16-mixed (images/s) | {t['bf16_mixed_images_per_s']:.1f} ({t['bf16_speedup']:.2f}×) | |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_captioning", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny config and sizes (a minute)")
    parser.add_argument("--ckpt", type=Path, default=None, help="reuse this checkpoint instead of training")
    parser.add_argument(
        "--config", type=Path, default=None, help="training config (default configs/captioning.yaml)"
    )
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--beam-images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument(
        "--style",
        choices=("plain", "varied"),
        default=None,
        help="scene style to train on and test in-generator (default: the config's); a style other "
        "than the config's is cached in its own folder (<data_dir>_<style>)",
    )
    parser.add_argument(
        "--oog-images",
        type=int,
        default=None,
        help="out-of-generator test images (default 500, 32 with --quick; 0: skip that split)",
    )
    parser.add_argument(
        "--scores-only", action="store_true", help="only the two test splits' scores: no speed or throughput"
    )
    parser.add_argument(
        "--results-name",
        default=None,
        metavar="STEM",
        help="file stem of the results under benchmarks/results (default from the config and style)",
    )
    args = parser.parse_args(argv)
    if args.oog_images is None:
        args.oog_images = 32 if args.quick else 500
    keep_freed_memory()  # as the multiattn command does (multiattn/runtime.py)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    from multiattn.tasks.captioning.data import SceneCaptionData
    from multiattn.tasks.captioning.system import CaptioningSystem

    config = args.config or ROOT / "configs" / ("captioning_tiny.yaml" if args.quick else "captioning.yaml")
    quick_root = ROOT / "outputs" / "bench_captioning_quick" if args.quick else None
    cfg = _config(config)
    data_args = dict(cfg["data"]["init_args"])
    if quick_root is not None:
        data_args["data_dir"] = str(quick_root / "data")
    style = args.style or data_args.get("style", "plain")
    overrides = []
    if style != data_args.get("style", "plain"):  # never regenerate the config's cache in another style
        data_args.update(style=style, data_dir=f"{data_args['data_dir']}_{style}")
        overrides = [f"--data.style={style}", f"--data.data_dir={data_args['data_dir']}"]
    wall = None
    if args.ckpt is None:
        ckpt, wall = _train(config, quick_root, overrides)
    else:
        ckpt = args.ckpt
    trained_s = _timer_seconds(ckpt) or wall
    data = SceneCaptionData(**data_args)
    data.setup("test")
    system = load_system(CaptioningSystem, ckpt)
    data.set_vocab(system.vocab)
    beam_size = system.decoding.beam_size
    oog_root = Path(data_args["data_dir"]).parent / "oog" if quick_root is None else quick_root / "oog"
    with torch.inference_mode():
        test = _test_scores(system, data.test_dataloader(), data.image_size, beam_size=beam_size)
        oog = None
        if args.oog_images > 0:
            loader = _oog_loader(oog_root, system, data, num_images=args.oog_images)
            oog = _test_scores(system, loader, data.image_size, beam_size=beam_size)
        beam, throughput = [], None
        if not args.scores_only:
            images = torch.cat([b.images for b in data.test_dataloader()])[: args.beam_images]
            beam = [
                row
                for threads in sorted({1, 2, args.threads})
                for row in _beam_speed(system, images, beam_size=args.beam_size, threads=threads)
            ]
        torch.set_num_threads(args.threads)
    if not args.scores_only:
        model_args = dict(cfg["model"]["init_args"])
        throughput = _throughput(
            model_args, data, steps=2 if args.quick else 6, rounds=2 if args.quick else 3
        )
    result = {
        "command": "python -m benchmarks.bench_captioning "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": shown_path(config),
        "checkpoint": shown_path(ckpt),
        "threads": args.threads,
        "java": java_available(),
        "training_minutes": None if trained_s is None else trained_s / 60,
        "training_wall_minutes": None if wall is None else wall / 60,
        "style": style,
        "test": test,
        "oog": oog,
        "oog_dir": shown_path(oog_root) if oog is not None else None,
        "beam": beam,
        "throughput": throughput,
    }
    # Another config's figures go to their own files (configs/captioning_demo.yaml: captioning_demo_*).
    name = args.config.stem if args.config is not None else "captioning"
    name += ("" if style == "plain" else f"_{style}") + ("_scores" if args.scores_only else "")
    name += "_quick" if args.quick else ""
    write_results(args.results_name or name, result, _markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
