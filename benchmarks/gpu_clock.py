"""A Lightning callback that times training steps, data waits and GPU use, for ``bench_gpu``.

Added to a ``multiattn fit`` run with ``--trainer.callbacks+=benchmarks.gpu_clock.StepClock`` and
configured through environment variables (so the run's config stays the task's own):

- ``MULTIATTN_CLOCK_OUT``: the JSON file it writes (after every validation and at the end);
- ``MULTIATTN_CLOCK_TARGET``: ``"val/acc>=0.98"`` or ``"val/wer<=0.1"``: stop training at the first
  validation that reaches it (time to quality);
- ``MULTIATTN_CLOCK_WARMUP``: training steps left out of the timing at the start (default 10:
  allocator and cuDNN autotuning warm-up).

Timing without a synchronisation per step (which would stall the queue of kernels the GPU works
through while the host fetches the next batch): the host's time between the end of one step and
the start of the next (the batch fetched and copied to the device) is the data wait; steps/s is
the steps over the wall time of a window, closed with a synchronisation before each validation and
at the end. GPU busy share: NVML's utilisation ("a kernel was running during the last sample
period"), sampled every 0.1 s while a window is open, when ``pynvml`` (nvidia-ml-py) and a CUDA
device are there; ``None`` otherwise. Peak memory: ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from multiattn.io import write_json

__all__ = ["StepClock", "Utilisation", "parse_target", "batch_size_of"]

_TARGET = re.compile(r"^\s*([\w/.]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


def parse_target(text: str | None) -> tuple[str, str, float] | None:
    """``"val/acc>=0.98"`` -> ``("val/acc", ">=", 0.98)``; ``None`` / empty -> ``None``."""
    if not text:
        return None
    match = _TARGET.match(text)
    if match is None:
        raise ValueError(
            f"MULTIATTN_CLOCK_TARGET: expected METRIC>=VALUE or METRIC<=VALUE, received {text!r}"
        )
    return match.group(1), match.group(2), float(match.group(3))


def batch_size_of(batch: Any) -> tuple[int, float]:
    """``(items, audio seconds)`` of a task batch (audio seconds 0 for images)."""
    waveform, lengths = getattr(batch, "waveform", None), getattr(batch, "lengths", None)
    if isinstance(waveform, torch.Tensor) and isinstance(lengths, torch.Tensor):
        return int(waveform.shape[0]), float(lengths.sum()) / 16000.0  # the speech task's 16 kHz
    try:
        return len(batch), 0.0
    except TypeError:
        return 0, 0.0


class Utilisation:
    """NVML utilisation sampled every ``period`` seconds while ``active`` is set."""

    def __init__(self, device_index: int, period: float = 0.1) -> None:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        self.samples: list[int] = []
        self.active = threading.Event()
        self._stop = threading.Event()
        self._period = period
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.active.is_set():
                self.samples.append(int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
            time.sleep(self._period)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


class StepClock(Callback):
    """Times steps, data waits and GPU use of a training run; optionally stops at a target."""

    def __init__(self) -> None:
        self.out = os.environ.get("MULTIATTN_CLOCK_OUT")
        self.target = parse_target(os.environ.get("MULTIATTN_CLOCK_TARGET"))
        self.warmup = int(os.environ.get("MULTIATTN_CLOCK_WARMUP", "10"))
        self._fit_start = 0.0
        self._window_start: float | None = None
        self._last_end: float | None = None
        self._steps_seen = 0
        self.stats = {"steps": 0, "items": 0, "audio_seconds": 0.0, "train_seconds": 0.0, "wait_seconds": 0.0}
        self.validations: list[dict[str, Any]] = []
        self.reached: dict[str, Any] | None = None
        self._util: Utilisation | None = None
        self._util_error: str | None = None

    # ---- windows --------------------------------------------------------------------------
    def _sync(self, module: LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def _close_window(self, module: LightningModule) -> None:
        if self._window_start is None:
            return
        self._sync(module)
        self.stats["train_seconds"] += time.perf_counter() - self._window_start
        self._window_start = None
        self._last_end = None
        if self._util is not None:
            self._util.active.clear()

    # ---- hooks ----------------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_start = time.perf_counter()
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
            try:
                self._util = Utilisation(pl_module.device.index or 0)
            except Exception as err:  # no nvidia-ml-py, or NVML refuses: busy share unknown
                self._util_error = f"{type(err).__name__}: {err}"[:200]

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._steps_seen < self.warmup:
            return
        if self._window_start is None:
            self._sync(pl_module)
            self._window_start = time.perf_counter()
            if self._util is not None:
                self._util.active.set()
        elif self._last_end is not None:
            self.stats["wait_seconds"] += now - self._last_end

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._steps_seen += 1
        if self._window_start is None:
            return
        items, audio = batch_size_of(batch)
        self.stats["steps"] += 1
        self.stats["items"] += items
        self.stats["audio_seconds"] += audio
        self._last_end = time.perf_counter()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close_window(pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/") and v.numel() == 1
        }
        record = {
            "seconds": time.perf_counter() - self._fit_start,
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "metrics": metrics,
        }
        self.validations.append(record)
        if self.target is not None and self.reached is None:
            name, op, value = self.target
            got = metrics.get(name)
            if got is not None and (got >= value if op == ">=" else got <= value):
                self.reached = record
                trainer.should_stop = True
        self._write(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close_window(pl_module)
        self._write(trainer, pl_module)
        if self._util is not None:
            self._util.close()

    # ---- output ---------------------------------------------------------------------------
    def summary(self, pl_module: LightningModule) -> dict[str, Any]:
        s = self.stats
        seconds = s["train_seconds"]
        samples = self._util.samples if self._util is not None else []
        cuda = pl_module.device.type == "cuda"
        return {
            "device": str(pl_module.device),
            "warmup_steps": self.warmup,
            **s,
            "steps_per_s": s["steps"] / seconds if seconds else None,
            "items_per_s": s["items"] / seconds if seconds else None,
            "audio_seconds_per_s": s["audio_seconds"] / seconds if seconds and s["audio_seconds"] else None,
            "data_wait_share": s["wait_seconds"] / seconds if seconds else None,
            "gpu_busy_share": sum(samples) / (100 * len(samples)) if samples else None,
            "gpu_busy_samples": len(samples),
            "gpu_busy_error": self._util_error,
            "peak_memory_mib": torch.cuda.max_memory_allocated(pl_module.device) / 2**20 if cuda else None,
            "fit_seconds": time.perf_counter() - self._fit_start,
            "target": None if self.target is None else "".join(str(p) for p in self.target),
            "reached": self.reached,
            "validations": self.validations,
        }

    def _write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.out and trainer.is_global_zero:
            write_json(self.out, self.summary(pl_module), indent=1)
