"""Speech recognition benchmark: quality of the three decoders, alignment, speed.

Run: ``.venv/bin/python -m benchmarks.bench_asr [--quick] [--ckpt C] [--threads N]``; writes
``benchmarks/results/asr.json`` and ``benchmarks/results/asr.md``.

1. Training: without ``--ckpt``, trains the default config (``multiattn fit -c configs/asr.yaml``,
   or ``configs/asr_tiny.yaml`` with ``--quick``) and records its wall time; with ``--ckpt``,
   evaluates that checkpoint (the training time is then read from its log when present).
2. Quality on every evaluation split of the embedded corpus: corpus WER / CER and real-time
   factor of CTC greedy, attention beam search and joint CTC/attention beam search, side by side
   (beam 10, joint CTC weight and language-model weight from the checkpoint unless
   ``--ctc-weight`` / ``--lm-weight``; attention and joint decoding use the language model when
   the checkpoint has one, and ``joint_no_lm`` is then joint decoding without it), and Whisper
   base on the same audio (``whisper_base``, when the ``whisper`` extra is installed; one line
   says it was skipped otherwise). Splits (``--splits``; ``SPLIT+CONDITION`` degrades a split with
   a fixed condition of ``multiattn.tasks.asr.augment.EVAL_CONDITIONS``): for the open-vocabulary
   corpus ``test`` (in domain), ``test_heldout_text`` (held-out text domain),
   ``test_unseen_voices``, ``test_other_synth`` (flite / festival; skipped with one line when
   they are not installed), ``test+noise_10db``, ``test+reverb``, ``test+telephone``; for the
   grammar corpus ``test``, ``test_unseen_voices`` and the three conditions. ``--corpus-text``
   / ``--corpus-size`` / ``--data-dir`` / ``--rate-range`` score a checkpoint on another corpus than its own.
3. Alignment on ``test``: each correctly recognised word's start from the decoder attention
   (arg-max frame of its first character) and from the CTC forced alignment, against espeak-ng's
   word events: median absolute error (ms), share within 50 / 100 ms.
4. Decoding speed: real-time factor of joint decoding (beam 10, 16 utterances per batch), and
   the same utterances one at a time, with a check that the transcripts are identical (after a
   warm-up, best of 3 interleaved rounds each).
5. Training throughput, seconds of audio per second, fp32 vs bf16 autocast, side by side on the
   same batches (forward + backward + AdamW step of the checkpoint's architecture).

JSON keys: ``config``, ``checkpoint``, ``threads``, ``load_average``, ``train_minutes``,
``lm_weight``, ``corpus``, ``skipped`` (lines saying what was not run and why),
``quality[split][decoder] = {wer, cer, utterances, seconds, rtf, wer_by_voice, wer_by_accent}``, ``alignment[source] = {median_abs_error_ms,
mean_abs_error_ms, within_50ms, within_100ms, words}``, ``decoding = {batch_size, beam_size,
ctc_weight, audio_seconds, batched_seconds, rtf_batched, single_seconds, rtf_single,
batched_speedup, identical_transcripts}``, ``training_throughput = {fp32, bf16_mixed,
bf16_speedup}`` (audio seconds per second).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.output import machine, shown_path
from benchmarks.timing import best_of_interleaved
from multiattn.runtime import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _train(config: str) -> tuple[Path, float]:
    env = {**os.environ, "JSONARGPARSE_DEPRECATION_WARNINGS": "off"}
    start = time.time()
    subprocess.run(
        [sys.executable, "-m", "multiattn.cli", "fit", "-c", config], check=True, cwd=ROOT, env=env
    )
    minutes = (time.time() - start) / 60
    out = "outputs/asr_tiny" if "tiny" in config else "outputs/asr"
    return ROOT / out / "checkpoints" / "best.ckpt", minutes


def _train_minutes_from_log(ckpt: Path) -> float | None:
    """Wall time between the first and the last write of the run's metrics (its log folder)."""
    folder = ckpt.parent.parent / "logs"
    logs = sorted(
        [*folder.glob("version_*/metrics.csv"), *folder.glob("version_*/events.out.tfevents.*")],
        key=lambda p: p.stat().st_mtime,
    )
    if not logs:
        return None
    config = logs[-1].parent / "config.yaml"  # written by SaveConfigCallback when fit starts
    return (logs[-1].stat().st_mtime - config.stat().st_mtime) / 60 if config.exists() else None


OPEN_SPLITS = (
    "test",
    "test_heldout_text",
    "test_unseen_voices",
    "test_other_synth",
    "test+noise_10db",
    "test+reverb",
    "test+telephone",
)
GRAMMAR_SPLITS = ("test", "test_unseen_voices", "test+noise_10db", "test+reverb", "test+telephone")


def _loader(data_args: dict, split: str, batch_size: int, limit: int | None):
    """The test loader and dataset of ``split`` (``name`` or ``name+condition``)."""
    from multiattn.tasks.asr.data import ASRDataModule

    name, _, condition = split.partition("+")
    data = ASRDataModule(
        **{
            **data_args,
            "test_split": name,
            "test_condition": condition or None,
            "eval_batch_size": batch_size,
        }
    )
    data.prepare_data()
    data.setup("test")
    dataset = data.datasets["test"]
    if limit is not None:
        clean = getattr(dataset, "dataset", dataset)  # an AugmentedSpeechDataset wraps the clean one
        clean.entries = clean.entries[:limit]
    return data.test_dataloader(), dataset


def whisper_comparator(threads: int, wanted: bool = True) -> tuple[object | None, str | None]:
    """``(WhisperBase, None)``, or ``(None, one line saying why it is skipped)``."""
    from benchmarks import whisper_base

    if not wanted:
        return None, "whisper_base skipped: --no-whisper"
    absent = whisper_base.missing()
    if absent:
        from multiattn.extras import EXTRAS

        packages = ", ".join(EXTRAS[name][0] for name in absent)
        return None, f"whisper_base skipped: {packages} not installed (pip install 'multiattn[whisper]')"
    return whisper_base.WhisperBase(threads=threads), None


def _quality(
    system,
    loader,
    modes,
    beam_size: int,
    ctc_weight: float,
    lm_weight: float,
    alignment: bool,
    voices: dict[str, str] | None = None,
    whisper=None,
) -> tuple[dict, dict]:
    """WER / CER / real-time factor per decoding mode (and per voice, when ``voices`` maps audio
    paths to voices); ``whisper`` (a :class:`benchmarks.whisper_base.WhisperBase`) adds ``whisper_base``."""
    from multiattn.metrics.speech import boundary_errors, error_counts

    refs: list[str] = []
    paths: list[str] = []
    names = [*modes, *(["whisper_base"] if whisper is not None else [])]
    hyps: dict[str, list[str]] = {mode: [] for mode in names}
    seconds = dict.fromkeys(names, 0.0)
    audio_seconds = 0.0
    align: dict[str, list[float]] = {"true": [], "attention": [], "ctc": [], "true_ctc": []}
    for batch in loader:
        refs.extend(batch.texts)
        paths.extend(str(p) for p in batch.paths)
        audio_seconds += float(batch.lengths.sum()) / 16000
        if whisper is not None:
            waves = [batch.waveform[i, : int(n)] for i, n in enumerate(batch.lengths)]
            texts, elapsed = whisper.transcribe_all(waves)
            hyps["whisper_base"].extend(texts)
            seconds["whisper_base"] += elapsed
        for mode in modes:
            want_attention = alignment and mode == "joint"
            start = time.perf_counter()
            results = system.decode(
                batch.waveform,
                batch.lengths,
                mode=mode.removesuffix("_no_lm"),
                beam_size=beam_size,
                ctc_weight=ctc_weight,
                lm_weight=0.0 if mode.endswith("_no_lm") else lm_weight,
                return_attention=want_attention,
            )
            seconds[mode] += time.perf_counter() - start  # the word-start bookkeeping is not timed
            hyps[mode].extend(r.text for r in results)
            if want_attention and batch.words is not None:
                for result, words in zip(results, batch.words):
                    if words:
                        for key, values in system.alignment_errors(result, words).items():
                            align[key].extend(values)
    quality = {}
    for mode in names:
        words, chars = (
            error_counts(refs, hyps[mode], unit="word"),
            error_counts(refs, hyps[mode], unit="char"),
        )
        quality[mode] = {
            "wer": words["errors"] / max(words["reference_units"], 1),
            "cer": chars["errors"] / max(chars["reference_units"], 1),
            "utterances": len(refs),
            "seconds": round(seconds[mode], 2),
            "rtf": seconds[mode] / max(audio_seconds, 1e-9),
        }
        if voices:
            for key, group in (("wer_by_voice", lambda v: v), ("wer_by_accent", lambda v: v.split("+")[0])):
                pairs: dict[str, tuple[list[str], list[str]]] = {}
                for path, ref, hyp in zip(paths, refs, hyps[mode]):
                    pair = pairs.setdefault(group(voices.get(path, "?")), ([], []))
                    pair[0].append(ref)
                    pair[1].append(hyp)
                counts = {name: error_counts(r, h, unit="word") for name, (r, h) in sorted(pairs.items())}
                quality[mode][key] = {
                    name: c["errors"] / max(c["reference_units"], 1) for name, c in counts.items()
                }
    alignment_stats = {}
    if align["attention"]:
        alignment_stats["attention"] = boundary_errors(align["attention"], align["true"])
    if align["ctc"]:
        alignment_stats["ctc"] = boundary_errors(align["ctc"], align["true_ctc"])
    return quality, alignment_stats


def joint_decode(system, batch, *, beam_size: int, ctc_weight: float, lm_weight: float):
    """Joint CTC/attention decoding of one :class:`multiattn.tasks.asr.data.SpeechBatch` (its results)."""
    return system.decode(
        batch.waveform,
        batch.lengths,
        mode="joint",
        beam_size=beam_size,
        ctc_weight=ctc_weight,
        lm_weight=lm_weight,
    )


_SPEED_ROUNDS = 3


def _decoding_speed(
    system, dataset, *, count: int, batch_size: int, beam_size: int, ctc_weight: float, lm_weight: float
) -> dict:
    from multiattn.tasks.asr.data import collate_speech

    items = [dataset[i] for i in range(min(count, len(dataset)))]
    items.sort(key=lambda item: item.waveform.numel())  # batches of similar length, as the app does
    audio_seconds = sum(item.waveform.numel() for item in items) / 16000

    def run(size: int, selection: list = items) -> list[list[int]]:
        """Decode ``selection`` ``size`` at a time: every transcript's tokens."""
        tokens = []
        for i in range(0, len(selection), size):
            batch = collate_speech(selection[i : i + size])
            decoded = joint_decode(
                system, batch, beam_size=beam_size, ctc_weight=ctc_weight, lm_weight=lm_weight
            )
            tokens.extend(r.tokens for r in decoded)
        return tokens

    for size in (batch_size, 1):  # warm-up: first-call allocations and kernel selection
        run(size, items[:size])
    (batched, batched_seconds), (single, single_seconds) = best_of_interleaved(
        lambda: run(batch_size), lambda: run(1), rounds=_SPEED_ROUNDS
    )
    return {
        "batch_size": batch_size,
        "beam_size": beam_size,
        "ctc_weight": ctc_weight,
        "lm_weight": lm_weight,
        "utterances": len(items),
        "audio_seconds": audio_seconds,
        "batched_seconds": batched_seconds,
        "rtf_batched": batched_seconds / audio_seconds,
        "single_seconds": single_seconds,
        "rtf_single": single_seconds / audio_seconds,
        "batched_speedup": single_seconds / batched_seconds,
        "identical_transcripts": batched == single,
    }


def _training_throughput(hparams: dict, dataset, *, steps: int, batch_size: int) -> dict:
    from multiattn.tasks.asr.data import collate_speech
    from multiattn.tasks.asr.system import ASRSystem

    batches = [
        collate_speech([dataset[i % len(dataset)] for i in range(s * batch_size, (s + 1) * batch_size)])
        for s in range(steps + 1)
    ]
    out = {}
    for name, enabled in (("fp32", False), ("bf16_mixed", True)):
        torch.manual_seed(0)
        system = ASRSystem(**ASRSystem.upgrade_hyperparameters(hparams)).train()
        optimizer = torch.optim.AdamW(system.parameters(), lr=1e-4)
        elapsed, audio = 0.0, 0.0
        for index, batch in enumerate(batches):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                loss = system.compute_loss(batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if index:  # the first step warms up allocators and kernels
                elapsed += time.perf_counter() - start
                audio += float(batch.lengths.sum()) / 16000
        out[name] = audio / elapsed
    out["bf16_speedup"] = out["bf16_mixed"] / out["fp32"]
    return out


def _markdown(result: dict) -> str:
    lines = [
        "# Speech recognition benchmark",
        "",
        f"Checkpoint `{result['checkpoint']}`, {result['threads']} thread(s), load average {result['load_average']}"
        f"; machine: {result.get('machine', 'not recorded')}.",
        f"Training wall time: {result['train_minutes']} min. Language-model weight: {result.get('lm_weight', 0.0)}"
        " (attention and joint decoding; `joint_no_lm` is joint decoding without it).",
        "",
        f"Corpus: {result.get('corpus', '')}. Real-time factors: decoding wall time over audio time, "
        "utterances in batches of 16 (Whisper base: one at a time, int8, beam 5).",
        *[f"- {line}" for line in result.get("skipped", [])],
        "",
        "| split | decoder | WER % | CER % | real-time factor | utterances |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for split, decoders in result["quality"].items():
        for mode, q in decoders.items():
            rtf = f"{q['rtf']:.4f}" if "rtf" in q else "—"
            lines.append(
                f"| {split} | {mode} | {100 * q['wer']:.2f} | {100 * q['cer']:.2f} | {rtf} | {q['utterances']} |"
            )
    for split, decoders in result["quality"].items():
        # many voices (every espeak variant): by accent; a few: by voice (the JSON has both)
        voices = sorted({v for q in decoders.values() for v in q.get("wer_by_voice", {})})
        key, label = ("wer_by_voice", "voice") if len(voices) <= 20 else ("wer_by_accent", "accent")
        names = sorted({v for q in decoders.values() for v in q.get(key, {})})
        if len(names) > 1:
            lines += [
                "",
                f"WER % by {label} on `{split}`:",
                "",
                f"| {label} | " + " | ".join(decoders) + " |",
            ]
            lines.append("| --- |" + " ---: |" * len(decoders))
            for name in names:
                cells = " | ".join(
                    f"{100 * q.get(key, {}).get(name, float('nan')):.1f}" for q in decoders.values()
                )
                lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        "| word-start source | median abs error ms | mean ms | within 50 ms | within 100 ms | words |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for source, a in result["alignment"].items():
        lines.append(
            f"| {source} | {a['median_abs_error_ms']:.1f} | {a['mean_abs_error_ms']:.1f} | "
            f"{100 * a['within_50ms']:.1f}% | {100 * a['within_100ms']:.1f}% | {a['words']} |"
        )
    d = result.get("decoding")
    if d is None:
        return "\n".join([*lines, ""])
    lines += [
        "",
        f"Joint decoding, beam {d['beam_size']}, CTC weight {d['ctc_weight']}, {d['utterances']} utterances "
        f"({d['audio_seconds']:.1f} s of audio):",
        "",
        "| mode | seconds | real-time factor |",
        "| --- | ---: | ---: |",
        f"| batched ({d['batch_size']} per batch) | {d['batched_seconds']:.2f} | {d['rtf_batched']:.4f} |",
        f"| one at a time | {d['single_seconds']:.2f} | {d['rtf_single']:.4f} |",
        "",
        f"Batched speed-up: {d['batched_speedup']:.2f}x; identical transcripts: {d['identical_transcripts']}.",
        "",
    ]
    t = result.get("training_throughput")
    if t is None:
        return "\n".join([*lines, ""])
    lines += [
        "| training precision | audio seconds / second |",
        "| --- | ---: |",
        f"| fp32 | {t['fp32']:.1f} |",
        f"| bf16-mixed | {t['bf16_mixed']:.1f} |",
        "",
        f"bf16-mixed / fp32: {t['bf16_speedup']:.2f}x.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_asr", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config, few utterances (smoke run)")
    parser.add_argument(
        "--ckpt", type=Path, default=None, help="evaluate this checkpoint instead of training"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded machine)"
    )
    parser.add_argument("--ctc-weight", type=float, default=None, help="joint decoding CTC weight")
    parser.add_argument(
        "--lm-weight", type=float, default=None, help="language-model weight (default: the checkpoint's)"
    )
    parser.add_argument("--beam-size", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="utterances per test split (default all)")
    parser.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        help="training wall time to record (a run split over sessions)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["quality", "speed", "throughput"])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=None,
        choices=["ctc", "attention", "joint", "joint_no_lm"],
        help="decoders scored on the test splits (default: all; a subset makes a partial run)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="write the JSON (and its .md beside) here instead of benchmarks/results/",
    )
    parser.add_argument("--splits", nargs="+", default=None, help="SPLIT or SPLIT+CONDITION (default: all)")
    parser.add_argument(
        "--corpus-text",
        choices=["grammar", "open"],
        default=None,
        help="score on this corpus (default: the checkpoint's)",
    )
    parser.add_argument("--corpus-size", default=None, help="its size preset (default: the checkpoint's)")
    parser.add_argument("--data-dir", default=None, help="its cache folder (default: the checkpoint's)")
    parser.add_argument(
        "--rate-range",
        type=int,
        nargs=2,
        default=None,
        help="its speaking rates, wpm (default: the checkpoint's)",
    )
    parser.add_argument("--no-whisper", action="store_true", help="leave Whisper base out")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the multiattn command does (multiattn/runtime.py)
    torch.set_num_threads(args.threads)
    from multiattn.checkpoint import load_checkpoint, load_system
    from multiattn.io import atomic_open, write_json
    from multiattn.tasks.asr.system import ASRSystem

    config = "configs/asr_tiny.yaml" if args.quick else "configs/asr.yaml"
    if args.ckpt is None:
        ckpt, minutes = _train(config)
    else:
        config = None  # the checkpoint's own (its log folder's config.yaml)
        ckpt = args.ckpt
        minutes = args.train_minutes if args.train_minutes is not None else _train_minutes_from_log(ckpt)
    checkpoint = load_checkpoint(ckpt)
    system = load_system(ASRSystem, ckpt)
    ctc_weight = system.decoding.ctc_weight if args.ctc_weight is None else args.ctc_weight
    has_lm = system.language_model is not None
    lm_weight = (system.decoding.lm_weight if has_lm else 0.0) if args.lm_weight is None else args.lm_weight
    all_modes = ["ctc", "attention", "joint"] + (["joint_no_lm"] if has_lm and lm_weight > 0 else [])
    data_args = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    data_args = {k: v for k, v in data_args.items() if not k.startswith("_")}
    if not data_args or data_args.get("source") != "embedded":
        data_args = {"source": "embedded", "data_dir": "data/asr/embedded", "rate_range": (120, 170)}
    data_args.pop("augment", None)  # training augmentation never touches evaluation
    overrides = {
        "corpus_text": args.corpus_text,
        "corpus_size": args.corpus_size,
        "data_dir": args.data_dir,
        "rate_range": None if args.rate_range is None else tuple(args.rate_range),
    }
    data_args.update({k: v for k, v in overrides.items() if v is not None})
    if args.corpus_text is not None or args.corpus_size is not None:
        data_args.pop("split_sizes", None)  # the checkpoint's counts belong to its own corpus
    corpus_text = data_args.get("corpus_text", "grammar")
    splits = args.splits or list(OPEN_SPLITS if corpus_text == "open" else GRAMMAR_SPLITS)
    limit = 8 if args.quick else args.limit
    skipped: list[str] = []
    whisper, reason = (
        (None, "whisper_base skipped: --quick")
        if args.quick
        else whisper_comparator(args.threads, not args.no_whisper)
    )
    if reason:
        skipped.append(reason)
        print(reason, flush=True)
    result: dict = {
        "config": config,
        "checkpoint": shown_path(ckpt),
        "threads": args.threads,
        "load_average": round(os.getloadavg()[0], 2),
        "machine": machine(),
        "train_minutes": None if minutes is None else round(minutes, 1),
        "lm_weight": lm_weight,
        "corpus": f"{corpus_text} / {data_args.get('corpus_size', 'default')}",
        "skipped": skipped,
        "quality": {},
        "alignment": {},
    }
    modes = tuple(args.modes or all_modes)
    with torch.inference_mode():
        if "quality" not in args.skip:
            from multiattn.tasks.asr.sources.other_synth import INSTALL_HINT, missing_programs

            for split in splits:
                if split.startswith("test_other_synth") and missing_programs():
                    line = (
                        f"{split} skipped: {' and '.join(missing_programs())} not installed ({INSTALL_HINT})"
                    )
                    skipped.append(line)
                    print(line, flush=True)
                    continue
                loader, dataset = _loader(data_args, split, 16, limit)
                voices = {str(e.path): e.meta["voice"] for e in dataset.entries if e.meta.get("voice")}
                quality, alignment = _quality(
                    system,
                    loader,
                    modes,
                    args.beam_size,
                    ctc_weight,
                    lm_weight,
                    split == "test",
                    voices,
                    whisper,
                )
                result["quality"][split] = quality
                if alignment:
                    result["alignment"] = alignment
                print(split, quality, alignment, flush=True)
        _, test_set = _loader(data_args, "test", 16, None)
        if "speed" not in args.skip:
            result["decoding"] = _decoding_speed(
                system,
                test_set,
                count=16 if args.quick else 64,
                batch_size=16,
                beam_size=args.beam_size,
                ctc_weight=ctc_weight,
                lm_weight=lm_weight,
            )
            print(result["decoding"], flush=True)
    if "throughput" not in args.skip:
        hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
        result["training_throughput"] = _training_throughput(
            hparams, test_set, steps=2 if args.quick else 4, batch_size=4 if args.quick else 16
        )
        print(result["training_throughput"], flush=True)
    partial = (
        bool(args.skip)
        or set(modes) != set(all_modes)
        or args.limit is not None
        or args.splits is not None
        or any(v is not None for v in overrides.values())
    )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.output, result, indent=1)
        with atomic_open(args.output.with_suffix(".md"), "w", encoding="utf-8") as handle:
            handle.write(_markdown(result))
        print(f"wrote {args.output} and {args.output.with_suffix('.md')}")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A partial run (--skip, --modes, --limit, --splits, another corpus) must not replace the full results.
    write_json(RESULTS / ("asr_partial.json" if partial else "asr.json"), result, indent=1)
    if not partial:
        with atomic_open(RESULTS / "asr.md", "w", encoding="utf-8") as handle:
            handle.write(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
