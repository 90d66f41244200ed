"""GPU benchmark: every task trained, decoded and measured on one GPU, in one command with a time budget.

Parts, in this order (each in its own subprocess with its own time cap, so one that fails or runs
over cannot take the rest down; what is left of ``--budget`` is shared among the later parts):

0. ``prepare``: the three default configs' data generated at once, each in its own process (the
   speech corpus with a pool of every core), so the training parts time training.
1. ``attention``: self-attention forward + backward (B=8, D=256, 4 heads) at T in {128, 512, 2048}
   in fp32 / bf16 / fp16 (fp16 on CUDA only): the fast path's two kernels (SDPA, matmuls), the
   recording path and ``nn.MultiheadAttention``; the kernel the fast path picks on this device.
2. ``stn``, ``captioning``: time to quality of the task's default config (``configs/<task>.yaml``,
   bf16-mixed): ``multiattn fit`` stops at the first validation that reaches the target (stn val
   accuracy >= 0.98, i.e. the 2 % test-error target; captioning val BLEU-4 >= 0.75) or at the
   part's time cap; the same run gives training throughput, the share of the step time spent
   waiting for data, GPU busy share (NVML) and peak memory (:mod:`benchmarks.gpu_clock`).
3. ``real_captioning``, ``real_asr``: real-data scale on random tensors: the Show, Attend and Tell
   decoder of ``configs/captioning_coco.yaml`` on a 14x14x2048 grid (ResNet-101 features), batch 64,
   vocabulary 10,000, captions of up to 20 words; the ASR model of ``configs/asr_librispeech.yaml``
   on 15-second utterances with 5,000 output pieces at its batch size; steps/s, samples/s and GPU
   busy share in fp32, bf16 autocast, and bf16 compiled (``torch.compile``; skipped for the ASR
   model when the part has under 90 s left); the projected time of one COCO epoch (113,287 images
   x 5 captions) and of one LibriSpeech-960 epoch (281,241 utterances).
4. ``asr``: the default ASR config trained for what the budget leaves (its last validation WER).
5. ``decode_captioning``: beam 5 over 64 test images with the checkpoint of part 2, batched vs one
   image at a time (ms/image, identical captions); ``decode_asr``: joint CTC/attention decoding
   (the config's beam and weights, language model fused) at 16 and 64 utterances per batch, real-time
   factor, with the checkpoint of part 4 (skipped when part 4 wrote none).
6. ``throughput``: each default config for 50 steps in bf16-mixed and in fp32, side by side in
   one process (throughput, data-wait share, GPU busy share, peak memory, the bf16 / fp32 ratio).

Timing: warm-up first, CUDA events around each step (``time.perf_counter`` on the CPU), medians.
Results: ``benchmarks/results/gpu.json`` and ``gpu.md`` (rewritten after every part, so a run cut
short keeps what it measured), copied into ``$OUT`` when that is set. Runs go under
``--work`` (default ``outputs/bench_gpu``) in ``runs/<UTC time>/``, generated data in ``data/``. ``--dry-run`` runs every part at tiny sizes (the tiny
configs, small random tensors) on the CPU in about two minutes and writes
``gpu_dry_run.{json,md}`` into its work folder (default ``outputs/bench_gpu_dry_run``).

Usage::

    python -m benchmarks.bench_gpu                      # on the GPU machine, about 6 minutes
    python -m benchmarks.bench_gpu --budget 900         # more time for each part
    python -m benchmarks.bench_gpu --dry-run            # every part, tiny, on the CPU
    python -m benchmarks.bench_gpu --parts attention real_asr
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PARTS = (
    "prepare",
    "attention",
    "stn",
    "captioning",
    "real_captioning",
    "real_asr",
    "asr",
    "decode_captioning",
    "decode_asr",
    "throughput",
)
# Seconds each part may take at the default budget (scaled with --budget); "asr" gets the rest.
CAPS = {
    "prepare": 40,
    "attention": 15,
    "stn": 65,
    "captioning": 50,
    "real_captioning": 30,
    "real_asr": 45,
    "asr": 0,
    "decode_captioning": 25,
    "decode_asr": 25,
    "throughput": 60,
}
ASR_SHARE = 5  # at the default budget; "asr" also gets what earlier parts leave unused
DEFAULT_BUDGET = float(sum(CAPS.values()) + ASR_SHARE)  # 360 s
TARGETS = {"stn": "val/acc>=0.98", "captioning": "val/bleu_4>=0.75", "asr": None}
COCO_SAMPLES = 113_287 * 5  # Karpathy train split images x 5 captions each
LIBRISPEECH_960_UTTERANCES = 281_241


# ----------------------------------------------------------------------------- timing
def _device(name: str):
    import torch

    return torch.device(name)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    step: Callable[[], Any],
    device,
    *,
    warmup: int = 3,
    repeats: int = 10,
    max_seconds: float = 10.0,
    busy: bool = False,
) -> dict[str, Any]:
    """Median seconds of ``step`` after ``warmup`` calls: CUDA events on a GPU, wall time on the CPU.

    At least 3 timed calls; at most ``repeats``, fewer when ``max_seconds`` runs out. ``busy``: also
    the GPU busy share (NVML) over the timed calls, ``None`` where NVML is not there.
    """
    import torch

    for _ in range(warmup):
        step()
    _sync(device)
    sampler = _utilisation(device) if busy else None
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start_all < max_seconds):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1000.0)
        else:
            begin_s = time.perf_counter()
            step()
            times.append(time.perf_counter() - begin_s)
    result = {"median_s": statistics.median(times), "repeats": len(times)}
    if sampler is not None:
        sampler.close()
        result["gpu_busy_share"] = (
            sum(sampler.samples) / (100 * len(sampler.samples)) if sampler.samples else None
        )
    return result


def _utilisation(device):
    """An NVML sampler, active from now (``None`` on a CPU or without nvidia-ml-py)."""
    if device.type != "cuda":
        return None
    from benchmarks.gpu_clock import Utilisation

    try:
        sampler = Utilisation(device.index or 0)
    except Exception:  # no nvidia-ml-py, or NVML refuses: busy share unknown
        return None
    sampler.active.set()
    return sampler


def _autocast(device, dtype_name: str):
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype_name)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


# ----------------------------------------------------------------------------- environment
def environment() -> dict[str, Any]:
    """GPU name, torch / CUDA / cuDNN / Lightning versions, CPU count."""
    import lightning
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "lightning": lightning.__version__,
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    else:
        env["gpu"] = None
    return env


# ----------------------------------------------------------------------------- case: attention
def case_attention(device, dry: bool, seconds: float) -> None:
    """The fast path's two kernels vs the recording path vs nn.MultiheadAttention, fwd + bwd."""
    import torch
    from torch import nn

    from multiattn.attention import MultiHeadAttention
    from multiattn.attention.multihead import fast_path_kernel
    from multiattn.recording import record_attention

    batch, dim, heads = (2, 32, 2) if dry else (8, 256, 4)
    lengths = (16, 32) if dry else (128, 512, 2048)
    dtypes = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    methods = ("sdpa", "matmul", "recording", "torch_mha")
    per_case = max(0.2, seconds / (len(lengths) * len(dtypes) * len(methods) * 1.5))
    for length in lengths:
        for dtype in dtypes:
            torch.manual_seed(0)
            ours = MultiHeadAttention(dim, heads).to(device)
            reference = nn.MultiheadAttention(dim, heads, batch_first=True).to(device)
            x = torch.randn(batch, length, dim, device=device, requires_grad=True)
            rows = {}
            for method in methods:

                def step(method=method, ours=ours, reference=reference, x=x, dtype=dtype) -> None:
                    ours.kernel = method if method in ("sdpa", "matmul") else "auto"
                    recorder = record_attention() if method == "recording" else contextlib.nullcontext()
                    with recorder, _autocast(device, dtype):
                        if method == "torch_mha":
                            out = reference(x, x, x, need_weights=False)[0]
                        else:
                            out = ours(x)
                    out.float().sum().backward()
                    x.grad = None

                timing = measure(step, device, warmup=2, repeats=20, max_seconds=per_case)
                rows[method] = 1000 * timing["median_s"]
                _emit({"T": length, "dtype": dtype, "method": method, "median_ms": rows[method]})
            _emit(
                {
                    "T": length,
                    "dtype": dtype,
                    "choice": fast_path_kernel(device.type, dtype, length),
                    "fastest": min(rows, key=rows.get),
                    "fastest_kernel": min(("sdpa", "matmul"), key=rows.get),
                }
            )


# ----------------------------------------------------------------------------- case: real scale
def _train_modes(device, dry: bool) -> list[tuple[str, str, bool]]:
    """``(name, dtype, compiled)`` measured at real-data scale."""
    return [("fp32", "fp32", False), ("bf16", "bf16", False), ("bf16_compiled", "bf16", True)]


def _compile(module, dry: bool):
    import torch

    # The dry run traces with dynamo but skips code generation (seconds, not minutes, on a CPU).
    return torch.compile(module, backend="eager" if dry else "inductor")


def case_real_captioning(device, dry: bool, seconds: float) -> None:
    """The COCO Show, Attend and Tell decoder on a 14x14x2048 grid, batch 64, vocabulary 10,000."""
    import torch

    from multiattn.tasks.captioning.model import CaptionModelConfig, DecoderConfig, EncoderConfig, build_model

    coco = yaml.safe_load((ROOT / "configs" / "captioning_coco.yaml").read_text())["model"]["init_args"]
    batch, grid, channels, vocab, words = (4, 3, 16, 50, 6) if dry else (64, 14, 2048, 10_000, 20)
    dims = (
        {"embed_dim": 16, "hidden_dim": 16, "attn_dim": 16}
        if dry
        else {k: coco["model"]["decoder"][k] for k in ("embed_dim", "hidden_dim", "attn_dim")}
    )
    penalty = float(coco.get("attention_penalty", 0.0))
    _emit(
        {
            "config": {
                "batch": batch,
                "grid": [grid, grid, channels],
                "vocab": vocab,
                "max_words": words,
                **dims,
            }
        }
    )
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch, channels, grid, grid, generator=generator).to(device)
    tokens = torch.randint(3, vocab, (batch, words + 2), generator=generator)
    lengths = torch.randint(words // 2, words + 1, (batch,), generator=generator) + 2  # + <bos>, <eos>
    tokens[:, 0] = 1
    tokens[torch.arange(batch), lengths - 1] = 2
    tokens = tokens.masked_fill(torch.arange(words + 2)[None, :] >= lengths[:, None], 0).to(device)
    lengths = lengths.to(device)
    per_mode = seconds / 3
    for name, dtype, compiled in _train_modes(device, dry):
        torch.manual_seed(0)
        config = CaptionModelConfig(
            # only the encoder's out_channels matter: the grid is given
            encoder=EncoderConfig(name="cnn", channels=(channels,), strides=(1,)),
            decoder=DecoderConfig(
                name="show_attend_tell", dropout=float(coco["model"]["decoder"].get("dropout", 0.0)), **dims
            ),
        )
        model = build_model(config, vocab_size=vocab).to(device)
        decoder = _compile(model.decoder, dry) if compiled else model.decoder
        optimizer = torch.optim.AdamW(model.decoder.parameters(), lr=1e-4)
        model.train()

        def step(model=model, decoder=decoder, optimizer=optimizer, dtype=dtype) -> None:
            with _autocast(device, dtype):
                logits, attention = decoder(features, tokens[:, :-1], lengths - 1)
            from multiattn.tasks.captioning.model import CaptionOutput

            loss, _ = model.loss(CaptionOutput(logits, attention), tokens, lengths, attention_penalty=penalty)
            _optimizer_step(optimizer, loss)

        def rates(steps_per_s: float) -> dict[str, float]:
            return {"coco_epoch_minutes": COCO_SAMPLES / (steps_per_s * batch) / 60}

        _emit_training_speed(name, step, device, batch=batch, repeats=30, seconds=per_mode * 0.5, rates=rates)


def _optimizer_step(optimizer: Any, loss: Any) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _emit_training_speed(
    name: str,
    step: Callable[[], None],
    device: Any,
    *,
    batch: int,
    repeats: int,
    seconds: float,
    rates: Callable[[float], dict[str, float]],
) -> None:
    """Time training ``step`` (median of up to ``repeats``, at least a second) and emit its row;
    ``rates(steps_per_s)`` adds the case's own rates."""
    start = time.perf_counter()
    timing = measure(step, device, warmup=3, repeats=repeats, max_seconds=max(1.0, seconds), busy=True)
    steps_per_s = 1.0 / timing["median_s"]
    _emit(
        {
            "mode": name,
            "steps_per_s": steps_per_s,
            "samples_per_s": steps_per_s * batch,
            "repeats": timing["repeats"],
            "seconds_with_warmup": time.perf_counter() - start,
            "peak_memory_mib": _peak_mib(device),
            "gpu_busy_share": timing.get("gpu_busy_share"),
            **rates(steps_per_s),
        }
    )


def _peak_mib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def case_real_asr(device, dry: bool, seconds: float) -> None:
    """The LibriSpeech-config ASR model on 15-second utterances with 5,000 output pieces."""
    import torch

    from multiattn.tasks.asr.data import SpeechBatch
    from multiattn.tasks.asr.system import ASRSystem
    from multiattn.tasks.asr.tokenizer import SPECIALS

    cfg = yaml.safe_load((ROOT / "configs" / "asr_librispeech.yaml").read_text())
    args = dict(cfg["model"]["init_args"])
    batch, seconds_audio, pieces, tokens_per_utt = (
        (2, 1.0, 20, 5)
        if dry
        else (
            int(cfg["data"]["init_args"]["batch_size"]),
            15.0,
            5000,
            60,
        )
    )
    if dry:
        args.update(
            embed_dim=16, num_heads=2, encoder_layers=1, encoder_ff_dim=32, conv_kernel_size=3,
            decoder_layers=1, decoder_ff_dim=32, subsampling_channels=8,
        )  # fmt: skip
    symbols = [chr(0x4E00 + i) for i in range(pieces - len(SPECIALS))]  # stand-ins for the pieces
    args.update(tokenizer="char", vocab=list(SPECIALS) + symbols, log_overlays=False)
    args = ASRSystem.upgrade_hyperparameters(args)  # the flat names above into the nested configs
    model_args = args["model"]
    samples = int(seconds_audio * 16000)
    generator = torch.Generator().manual_seed(0)
    waveform = (0.1 * torch.randn(batch, samples, generator=generator)).to(device)
    lengths = torch.full((batch,), samples, dtype=torch.long).to(device)
    picks = torch.randint(0, len(symbols), (batch, tokens_per_utt), generator=generator).tolist()
    texts = ["".join(symbols[i] for i in row) for row in picks]
    speech = SpeechBatch(waveform=waveform, lengths=lengths, texts=texts, words=None, paths=[""] * batch)
    _emit(
        {
            "config": {
                "batch": batch,
                "seconds": seconds_audio,
                "pieces": pieces,
                "tokens_per_utterance": tokens_per_utt,
                "embed_dim": model_args["embed_dim"],
                "encoder_layers": model_args["encoder"]["num_layers"],
                "decoder_layers": model_args["decoder"]["num_layers"],
                "encoder_ff_dim": model_args["encoder"]["ff_dim"],
            }
        }
    )
    per_mode = seconds / 3
    started = time.perf_counter()
    for name, dtype, compiled in _train_modes(device, dry):
        if compiled and not dry and seconds - (time.perf_counter() - started) < 90:
            # Compiling this model (forward and backward) did not finish within 60 s on an H200 (2026-12-04).
            _emit({"mode": name, "skipped": "compilation needs about 90 s more than the part has left"})
            continue
        torch.manual_seed(0)
        system = ASRSystem(**args).to(device)
        system.train()
        if compiled:
            system.model = _compile(system.model, dry)
        optimizer = torch.optim.AdamW(system.parameters(), lr=1e-4)

        def step(system=system, optimizer=optimizer, dtype=dtype) -> None:
            with _autocast(device, dtype):
                loss = system.compute_loss(speech)["loss"]
            _optimizer_step(optimizer, loss)

        def rates(steps_per_s: float) -> dict[str, float]:
            return {
                "audio_seconds_per_s": steps_per_s * batch * seconds_audio,
                "librispeech_960_epoch_minutes": LIBRISPEECH_960_UTTERANCES / (steps_per_s * batch) / 60,
            }

        _emit_training_speed(name, step, device, batch=batch, repeats=20, seconds=per_mode * 0.5, rates=rates)


# ----------------------------------------------------------------------------- case: decoding
def _checkpoint_of(config: Path, work: Path) -> Path:
    """The ``best.ckpt`` a config's ModelCheckpoint writes (relative paths resolve under ``work``),
    or ``last.ckpt`` beside it when a run stopped at its time cap before a validation."""
    callbacks = yaml.safe_load(config.read_text())["trainer"].get("callbacks", [])
    for callback in callbacks:
        init = callback.get("init_args", {})
        if callback.get("class_path", "").endswith("ModelCheckpoint") and init.get("filename") == "best":
            best = work / init["dirpath"] / "best.ckpt"
            last = best.with_name("last.ckpt")
            return last if not best.exists() and last.exists() else best
    raise ValueError(f"{config}: no ModelCheckpoint writing best.ckpt")


def _data_args(config: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(config.read_text())["data"]["init_args"])


def case_decode_captioning(device, dry: bool, seconds: float, config: Path, work: Path) -> None:
    """Beam 5 over 64 test images: batched vs one image at a time, from the encoder's grid."""
    import torch

    from multiattn.checkpoint import load_system
    from multiattn.tasks.captioning.data import SceneCaptionData
    from multiattn.tasks.captioning.system import CaptioningSystem

    ckpt = _checkpoint_of(config, work)
    system = load_system(CaptioningSystem, ckpt).to(device).eval()
    data = SceneCaptionData(**{**_data_args(config), "num_workers": 0})
    data.setup("test")
    data.set_vocab(system.vocab)
    count = 8 if dry else 64
    images = torch.cat([b.images for b in data.test_dataloader()])[:count].to(device)
    model = system.model
    with torch.inference_mode():
        features = model.encoder(images)  # (B, C, H, W)

        def batched() -> list:
            return model.decode(features, beam_size=5)

        together = measure(batched, device, warmup=1, repeats=3, max_seconds=seconds / 3)
        # One at a time: warm up on two images, then one timed pass over all of them (the slow side).
        for i in range(2):
            model.decode(features[i : i + 1], beam_size=5)
        _sync(device)
        begin = time.perf_counter()
        single = [model.decode(features[i : i + 1], beam_size=5)[0] for i in range(count)]
        _sync(device)
        alone = {"median_s": time.perf_counter() - begin}
        identical = all(a.tokens == b.tokens for a, b in zip(batched(), single))
    _emit(
        {
            "checkpoint": str(ckpt.relative_to(work)),
            "images": count,
            "beam_size": 5,
            "batched_ms_per_image": 1000 * together["median_s"] / count,
            "one_at_a_time_ms_per_image": 1000 * alone["median_s"] / count,
            "speedup": alone["median_s"] / together["median_s"],
            "identical_captions": identical,
        }
    )


def case_decode_asr(device, dry: bool, seconds: float, config: Path, work: Path) -> None:
    """Joint CTC/attention decoding (language model fused) at 16 and 64 utterances per batch: RTF."""
    import torch

    from multiattn.checkpoint import load_system
    from multiattn.tasks.asr.data import ASRDataModule
    from multiattn.tasks.asr.system import ASRSystem

    ckpt = _checkpoint_of(config, work)
    system = load_system(ASRSystem, ckpt).to(device).eval()
    sizes = (2, 4) if dry else (16, 64)
    data = ASRDataModule(**{**_data_args(config), "num_workers": 0, "eval_batch_size": max(sizes)})
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    for size in sizes:
        waveform, lengths = batch.waveform[:size].to(device), batch.lengths[:size].to(device)
        audio = float(lengths.sum()) / 16000.0
        with torch.inference_mode():
            timing = measure(
                lambda waveform=waveform, lengths=lengths: system.decode(waveform, lengths, mode="joint"),
                device,
                warmup=1,
                repeats=3,
                max_seconds=seconds / (2 * len(sizes)),
            )
        _emit(
            {
                "checkpoint": str(ckpt.relative_to(work)),
                "batch": size,
                "utterances": int(waveform.shape[0]),
                "audio_seconds": audio,
                "decode_seconds": timing["median_s"],
                "rtf": timing["median_s"] / audio,
                "beam_size": system.decoding.beam_size,
                "ctc_weight": system.decoding.ctc_weight,
                "lm_weight": system.resolve_lm_weight(None),
            }
        )


def case_asr_corpus(device, dry: bool, seconds: float, config: Path, work: Path) -> None:
    """Generate the config's embedded corpus with every core (the data module would use two)."""
    from multiattn.tasks.asr.sources.corpus import embedded_corpus

    args = _data_args(config)
    start = time.perf_counter()
    kwargs = {
        "size": args.get("corpus_size", "default"),
        "seed": args.get("corpus_seed", 0),
        "progress": False,
    }
    if args.get("rate_range") is not None:
        kwargs["rate_range"] = tuple(args["rate_range"])
    if args.get("split_sizes") is not None:
        kwargs["split_sizes"] = args["split_sizes"]
    embedded_corpus(str(work / args["data_dir"]), num_workers=max(1, (os.cpu_count() or 2) - 1), **kwargs)
    _emit({"corpus_seconds": time.perf_counter() - start})


def case_prepare(device, dry: bool, seconds: float, config: Path, work: Path) -> None:
    """Generate (or find cached) one config's data under ``work``."""
    import importlib

    data = yaml.safe_load(config.read_text())["data"]
    if data["init_args"].get("source") == "embedded" and "corpus_size" in data["init_args"]:
        case_asr_corpus(device, dry, seconds, config, work)  # the speech corpus, with every core
        return
    module, name = data["class_path"].rsplit(".", 1)
    start = time.perf_counter()
    os.chdir(work)  # the config's relative data_dir
    getattr(importlib.import_module(module), name)(**data["init_args"]).prepare_data()
    _emit({"data_seconds": time.perf_counter() - start})


def case_throughput(device, dry: bool, seconds: float, config: Path | None, work: Path) -> None:
    """Each default config, bf16-mixed and fp32 side by side: a short ``fit`` each, in one process."""
    import torch

    from benchmarks.gpu_clock import StepClock
    from multiattn.lightning_cli import build_cli

    folder = work / "throughput"  # its checkpoints stay apart from the timed runs'
    folder.mkdir(exist_ok=True)
    if not (folder / "data").exists():
        (folder / "data").symlink_to((work / "data").resolve(), target_is_directory=True)
    os.chdir(folder)
    steps, warmup = (4, 1) if dry else (50, 10)
    workers = 0 if dry else min(8, max(0, (os.cpu_count() or 1) - 2))
    per_run = max(8.0, seconds / 6)
    for task in ("stn", "captioning", "asr"):
        for precision in ("bf16-mixed", "32-true"):
            os.environ["MULTIATTN_CLOCK_OUT"] = ""
            os.environ["MULTIATTN_CLOCK_WARMUP"] = str(warmup)
            os.environ.pop("MULTIATTN_CLOCK_TARGET", None)
            arguments = ["-c", str(_task_config(task, dry)), "--trainer.precision", precision]
            arguments += ["--trainer.accelerator", "gpu" if device.type == "cuda" else "cpu"]
            arguments += ["--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0"]
            arguments += ["--trainer.max_time", _max_time(per_run), "--trainer.enable_progress_bar", "false"]
            arguments += ["--data.init_args.num_workers", str(workers)]
            arguments += ["--trainer.callbacks+=benchmarks.gpu_clock.StepClock"]
            cli = build_cli(arguments, run=False)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            clock = next(c for c in cli.trainer.callbacks if isinstance(c, StepClock))
            summary = clock.summary(cli.model)
            keys = ("steps", "steps_per_s", "items_per_s", "audio_seconds_per_s", "data_wait_share")
            keys += ("gpu_busy_share", "peak_memory_mib")
            _emit({"task": task, "precision": precision, **{k: summary[k] for k in keys}})
            del cli
            if device.type == "cuda":
                torch.cuda.empty_cache()


CASES: dict[str, Callable[..., None]] = {
    "attention": case_attention,
    "real_captioning": case_real_captioning,
    "real_asr": case_real_asr,
    "decode_captioning": case_decode_captioning,
    "decode_asr": case_decode_asr,
    "asr_corpus": case_asr_corpus,
    "prepare": case_prepare,
    "throughput": case_throughput,
}
# These take a config (or None) and the run folder.
TASK_CASES = {"decode_captioning", "decode_asr", "asr_corpus", "prepare", "throughput"}


# ----------------------------------------------------------------------------- the parent
def _subprocess_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
        "JSONARGPARSE_DEPRECATION_WARNINGS": "off",
        "PYTHONUNBUFFERED": "1",
    }


def _run(
    command: list[str], *, timeout: float, cwd: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``command``; JSON lines of its stdout become ``rows``; a timeout keeps what it printed."""
    start = time.perf_counter()
    status = "ok"
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env or _subprocess_env(), capture_output=True, text=True, timeout=timeout
        )
        stdout, stderr = done.stdout, done.stderr
        if done.returncode != 0:
            tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
            status = f"failed (exit {done.returncode}): " + " | ".join(tail)[-600:]
    except subprocess.TimeoutExpired as err:
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        status = f"timed out after {timeout:.0f} s"
    rows = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
    return {
        "status": status,
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
        "stderr": stderr,
    }


def _case(name: str, args: argparse.Namespace, timeout: float, config: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bench_gpu", "--case", name, "--device", args.device]
    command += ["--case-seconds", f"{max(1.0, timeout - 15):.1f}", "--work", str(args.run_dir)]
    if config is not None:
        command += ["--config", str(config)]
    if args.dry_run:
        command.append("--dry-run")
    result = _run(command, timeout=timeout, cwd=ROOT)
    result.pop("stderr")
    return result


def _max_time(seconds: float) -> str:
    seconds = max(1, int(seconds))
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _prepare(args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Generate the three default configs' data at once, each in its own process (the speech
    corpus with a pool of its own), so the training parts time training, not generation."""
    start = time.perf_counter()
    commands = {
        task: [sys.executable, "-m", "benchmarks.bench_gpu", "--case", "prepare", "--device", "cpu"]
        + ["--work", str(args.run_dir), "--config", str(_task_config(task, args.dry_run))]
        for task in ("stn", "captioning", "asr")
    }
    processes = {
        task: subprocess.Popen(
            command,
            cwd=ROOT,
            env=_subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task, command in commands.items()
    }
    rows, failures = [], []
    for task, process in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            failures.append(f"{task} timed out")
            continue
        if process.returncode != 0:
            failures.append(f"{task} failed: " + " | ".join(stderr.strip().splitlines()[-2:])[-300:])
        rows += [{"task": task, **json.loads(line)} for line in stdout.splitlines() if line.startswith("{")]
    status = "ok" if not failures else "; ".join(failures)
    return {"status": status, "seconds": round(time.perf_counter() - start, 1), "rows": rows}


def _fit(task: str, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """``multiattn fit`` of the task's default config (bf16-mixed) in the run folder, with the
    step clock, up to the task's target or the part's time cap; its summary."""
    config = _task_config(task, args.dry_run)
    clock = args.run_dir / "clock" / f"{task}.json"
    clock.parent.mkdir(parents=True, exist_ok=True)
    clock.unlink(missing_ok=True)
    workers = 0 if args.dry_run else min(8, max(0, (os.cpu_count() or 1) - 2))
    command = [sys.executable, "-m", "multiattn.cli", "fit", "-c", str(config)]
    command += ["--trainer.accelerator", "gpu" if args.device == "cuda" else "cpu"]
    command += ["--trainer.enable_progress_bar", "false", "--data.init_args.num_workers", str(workers)]
    command += ["--trainer.callbacks+=benchmarks.gpu_clock.StepClock"]
    if task == "captioning":  # no METEOR / PTB tokenizer: the carried pycocoevalcap has no Java parts
        command += ["--model.init_args.use_java", "false"]
    env = {**_subprocess_env(), "MULTIATTN_CLOCK_OUT": str(clock)}
    env["MULTIATTN_CLOCK_WARMUP"] = "2" if args.dry_run else "10"
    target = TARGETS[task]
    if target and not args.dry_run:
        env["MULTIATTN_CLOCK_TARGET"] = target
    # Leave time for start-up (about 15 s) and the last validation.
    command += ["--trainer.max_time", _max_time(timeout * 0.85 - 12)]
    if args.dry_run:
        command += ["--trainer.max_epochs", "1"]
    else:
        command += ["--trainer.precision", "bf16-mixed"]
    result = _run(command, timeout=timeout, cwd=args.run_dir, env=env)
    stderr = result.pop("stderr")
    result.pop("rows")
    result["config"] = str(config.relative_to(ROOT))
    if clock.exists():
        result["clock"] = json.loads(clock.read_text())
    elif result["status"] == "ok":
        result["status"] = "failed: no clock output; " + " | ".join(stderr.strip().splitlines()[-3:])[-400:]
    return result


def _task_config(task: str, dry: bool) -> Path:
    return ROOT / "configs" / (f"{task}_tiny.yaml" if dry else f"{task}.yaml")


def run_parts(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    # The caps of the parts asked for, scaled to fill the budget (a subset gets more time each).
    scale = args.budget / (sum(CAPS[p] for p in args.parts) + (ASR_SHARE if "asr" in args.parts else 0))
    # A dry run's tables are not figures: they stay in its work folder.
    folder, stem = (args.work, "gpu_dry_run") if args.dry_run else (RESULTS, "gpu")
    result: dict[str, Any] = {
        "command": "python -m benchmarks.bench_gpu " + " ".join(args.argv),
        "dry_run": args.dry_run,
        "device": args.device,
        "budget_s": args.budget,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "environment": environment(),
        "parts": {},
    }
    # Each run trains in a folder of its own (no checkpoint of an earlier run is ever read or
    # replaced); the generated data are shared between runs (data/, linked into the run folder).
    args.run_dir = args.work / "runs" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    args.run_dir.mkdir(parents=True, exist_ok=True)
    (args.work / "data").mkdir(exist_ok=True)
    (args.run_dir / "data").symlink_to(args.work / "data", target_is_directory=True)
    # Relative to the checkout where it lies inside it: results name no machine's paths.
    result["run_dir"] = str(
        args.run_dir.resolve().relative_to(ROOT)
        if args.run_dir.resolve().is_relative_to(ROOT)
        else args.run_dir
    )
    for part in args.parts:
        left = args.budget - (time.perf_counter() - start)
        later = [p for p in args.parts[args.parts.index(part) + 1 :]]
        if part == "asr":  # everything the later parts do not need
            cap = left - sum(CAPS[p] * scale for p in later)
        else:
            cap = CAPS[part] * scale
        timeout = min(cap, left) if not args.dry_run else 600.0  # a dry run on a busy CPU: no cap
        if timeout < 10 and not args.dry_run:
            result["parts"][part] = {"status": f"skipped: budget ({left:.0f} s left)"}
            continue
        print(f"[bench_gpu] {part}: up to {timeout:.0f} s", flush=True)
        if part == "prepare":
            outcome = _prepare(args, timeout)
        elif part in ("stn", "captioning", "asr"):
            outcome = _fit(part, args, timeout)
        elif part.startswith("decode_"):
            config = _task_config(part.removeprefix("decode_"), args.dry_run)
            ckpt = _checkpoint_of(config, args.run_dir)
            if ckpt.exists():
                outcome = _case(part, args, timeout, config)
            else:
                outcome = {"status": f"skipped: no checkpoint ({ckpt.relative_to(args.run_dir)} not trained)"}
        else:
            outcome = _case(part, args, timeout)
        result["parts"][part] = outcome
        print(f"[bench_gpu] {part}: {outcome['status']} in {outcome.get('seconds', 0):.0f} s", flush=True)
        result["elapsed_s"] = round(time.perf_counter() - start, 1)
        _write(result, folder, stem)
    result["elapsed_s"] = round(time.perf_counter() - start, 1)
    _write(result, folder, stem)
    return result


def _write(result: dict[str, Any], folder: Path, stem: str) -> None:
    from multiattn.io import atomic_open, write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{stem}.json", result, indent=1)
    with atomic_open(folder / f"{stem}.md", "w", encoding="utf-8") as handle:
        handle.write(markdown(result))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for suffix in (".json", ".md"):
            shutil.copyfile(folder / f"{stem}{suffix}", Path(out) / f"{stem}{suffix}")


# ----------------------------------------------------------------------------- markdown
def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    """The tables of ``gpu.md`` from the JSON (paste-ready for the docs)."""
    env = result["environment"]
    parts = result["parts"]
    lines = [
        "# GPU benchmark" + (" (dry run: tiny sizes, not figures)" if result["dry_run"] else ""),
        "",
        f"Command: `{result['command']}`; {result['date']}; budget {result['budget_s']:.0f} s, "
        f"elapsed {_f(result.get('elapsed_s'), 0)} s",
        "",
        f"GPU: {env.get('gpu') or 'none'}"
        + (f" ({env['gpu_memory_gib']} GiB, sm {env['compute_capability']})" if env.get("gpu") else "")
        + f"; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Lightning {env['lightning']}, "
        f"Python {env['python']}, {env['cpu_count']} CPUs",
        "",
        "## Parts",
        "",
        "| part | status | seconds |",
        "| --- | --- | ---: |",
        *(f"| {name} | {p['status']} | {_f(p.get('seconds'), 0)} |" for name, p in parts.items()),
        "",
    ]
    fits = {name: p for name, p in parts.items() if "clock" in p}
    if fits:
        lines += [
            "## Task default configs: time to quality (bf16-mixed)",
            "",
            "| run | precision | steps/s | items/s | audio s/s | data wait share | GPU busy | peak MiB | "
            "target | reached at (s from fit start) | last validation |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
        ]
        for name, p in fits.items():
            c = p["clock"]
            last = c["validations"][-1]["metrics"] if c["validations"] else {}
            shown = ", ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in last.items() if k != "val/loss")
            reached = c.get("reached")
            lines.append(
                f"| {name} | bf16-mixed | {_f(c['steps_per_s'])} | "
                f"{_f(c['items_per_s'])} | {_f(c['audio_seconds_per_s'])} | {_f(c['data_wait_share'], 3)} | "
                f"{_f(c['gpu_busy_share'], 2)} | {_f(c['peak_memory_mib'], 0)} | {c['target'] or '-'} | "
                f"{_f(reached['seconds'], 0) + ' (epoch ' + str(reached['epoch']) + ')' if reached else 'not reached'} | "
                f"{shown} |"
            )
        lines.append("")
    runs = [r for r in parts.get("throughput", {}).get("rows", []) if "precision" in r]
    if runs:
        lines += [
            "## Task default configs: training throughput, bf16-mixed and fp32 side by side",
            "",
            "| task | precision | steps/s | items/s | audio s/s | data wait share | GPU busy | peak MiB | bf16 / fp32 |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        speed = {(r["task"], r["precision"]): r.get("items_per_s") for r in runs}
        for r in runs:
            bf16, fp32 = speed.get((r["task"], "bf16-mixed")), speed.get((r["task"], "32-true"))
            ratio = f"{bf16 / fp32:.2f}×" if r["precision"] == "bf16-mixed" and bf16 and fp32 else ""
            lines.append(
                f"| {r['task']} | {r['precision']} | {_f(r['steps_per_s'])} | {_f(r['items_per_s'])} | "
                f"{_f(r['audio_seconds_per_s'])} | {_f(r['data_wait_share'], 3)} | {_f(r['gpu_busy_share'], 2)} | "
                f"{_f(r['peak_memory_mib'], 0)} | {ratio} |"
            )
        lines.append("")
    prepared = [r for r in parts.get("prepare", {}).get("rows", []) if "task" in r]
    if prepared:
        lines += [
            "Data generation: "
            + ", ".join(
                f"{r['task']} {_f(r.get('data_seconds', r.get('corpus_seconds')), 0)} s" for r in prepared
            ),
            "",
        ]
    for name, title, keys in (
        ("real_captioning", "Captioning decoder at COCO scale (random tensors)", "coco_epoch_minutes"),
        ("real_asr", "ASR at LibriSpeech scale (random tensors)", "librispeech_960_epoch_minutes"),
    ):
        rows = parts.get(name, {}).get("rows", [])
        config = next((r["config"] for r in rows if "config" in r), None)
        modes = [r for r in rows if "steps_per_s" in r]
        skipped = [f"{r['mode']} ({r['skipped']})" for r in rows if "skipped" in r]
        if not modes:
            continue
        lines += [f"## {title}", "", f"Sizes: `{json.dumps(config)}`", ""]
        lines += [
            "| mode | steps/s | samples/s | GPU busy | peak MiB | projected epoch (min) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        base = next((r for r in modes if r["mode"] == "fp32"), None)
        for r in modes:
            lines.append(
                f"| {r['mode']} | {_f(r['steps_per_s'], 2)} | {_f(r['samples_per_s'])} | "
                f"{_f(r.get('gpu_busy_share'), 2)} | {_f(r['peak_memory_mib'], 0)} | {_f(r[keys], 0)} |"
            )
        if base:
            ratios = ", ".join(
                f"{r['mode']} {r['steps_per_s'] / base['steps_per_s']:.2f}×" for r in modes if r is not base
            )
            lines += ["", f"Speed over fp32 eager: {ratios}"]
        if skipped:
            lines += ["", "Skipped: " + "; ".join(skipped)]
        lines.append("")
    rows = parts.get("attention", {}).get("rows", [])
    timed = [r for r in rows if "method" in r]
    if timed:
        lines += ["## Self-attention forward + backward (ms, median)", ""]
        lines += [
            "| T | dtype | sdpa | matmul | recording | nn.MultiheadAttention | fast path picks | faster kernel "
            "| fastest |"
        ]
        lines += ["| ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
        table: dict[tuple, dict] = {}
        for r in rows:
            table.setdefault((r["T"], r["dtype"]), {}).update(
                {r["method"]: r["median_ms"]} if "method" in r else r
            )
        for (length, dtype), r in table.items():
            lines.append(
                f"| {length} | {dtype} | {_f(r.get('sdpa'), 3)} | {_f(r.get('matmul'), 3)} | "
                f"{_f(r.get('recording'), 3)} | {_f(r.get('torch_mha'), 3)} | {r.get('choice', '-')} | "
                f"{r.get('fastest_kernel', '-')} | {r.get('fastest', '-')} |"
            )
        lines.append("")
    decode = [r for r in parts.get("decode_captioning", {}).get("rows", []) if "speedup" in r]
    decode_asr = [r for r in parts.get("decode_asr", {}).get("rows", []) if "rtf" in r]
    if decode or decode_asr:
        lines += ["## Decoding on the device", ""]
        for r in decode:
            lines.append(
                f"- captioning, beam {r['beam_size']}, {r['images']} images: batched {_f(r['batched_ms_per_image'], 2)} "
                f"ms/image, one at a time {_f(r['one_at_a_time_ms_per_image'], 2)} ms/image ({_f(r['speedup'], 2)}×; "
                f"identical captions: {r['identical_captions']})"
            )
        for r in decode_asr:
            lines.append(
                f"- ASR joint CTC/attention (beam {r['beam_size']}, CTC weight {r['ctc_weight']}, LM weight "
                f"{r['lm_weight']}), {r['batch']} utterances per batch ({_f(r['audio_seconds'])} s of audio): "
                f"RTF {r['rtf']:.4f}"
            )
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_gpu", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds the whole run may take")
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny sizes on the CPU")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="only these parts")
    parser.add_argument("--work", type=Path, default=None, help="runs and data (default outputs/bench_gpu)")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--case-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    from multiattn.runtime import keep_freed_memory

    keep_freed_memory()
    import torch

    if args.device is None:
        if not args.dry_run and not args.case and not torch.cuda.is_available():
            print(
                "bench_gpu: no CUDA device here (--dry-run runs every part at tiny sizes on the CPU; "
                "--device cpu runs the full sizes on the CPU)",
                file=sys.stderr,
            )
            return 2
        args.device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: --device cuda: CUDA is not available", file=sys.stderr)
        return 2
    default_work = "outputs/bench_gpu_dry_run" if args.dry_run else "outputs/bench_gpu"
    args.work = (args.work or ROOT / default_work).resolve()
    if args.case:
        if args.dry_run:
            torch.set_num_threads(1)
        device = _device(args.device)
        if args.case in TASK_CASES:
            CASES[args.case](device, args.dry_run, args.case_seconds, args.config, args.work)
        else:
            CASES[args.case](device, args.dry_run, args.case_seconds)
        return 0
    result = run_parts(args)
    print(markdown(result))
    failed = [name for name, p in result["parts"].items() if not p["status"].startswith(("ok", "skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
