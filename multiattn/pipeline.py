"""The Python API: ``multiattn.load(checkpoint)`` -> a pipeline that runs a trained model on inputs.

    import multiattn
    pipe = multiattn.load("outputs/stn/checkpoints/best.ckpt")   # device="auto"
    result = pipe("digit.png")            # one input -> one result
    results = pipe([a, b, c])             # a list -> a list of results, batched
    result.to_dict()                      # exactly the app command's ``--json`` record
    result.attention                      # the maps behind it
    result.overlay()                      # a matplotlib figure

The checkpoint names the LightningModule it was written by (``hyper_parameters["_class_path"]``,
stored by LightningCLI). Every task declares itself in the registry (:mod:`multiattn.registry`,
the ``multiattn.apps`` entry points), its declaration naming its pipeline class (``Task.pipeline``);
:func:`load` picks the pipeline of the task whose package holds the checkpoint's class, so this
core module never imports a task by name. A checkpoint without a class path (a system saved
outside LightningCLI) goes to the first task whose system accepts its hyper-parameters.

The application commands (``caption``, ``classify``, ``transcribe``) are thin layers over the same
pipelines: the command line adds file discovery, overlay files, output files and progress.

Options (``beam_size``, ``max_len``, ...) are checked before any model runs: a non-finite or
out-of-range value raises :class:`OptionError` (a :class:`~multiattn.io.UserError`).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from multiattn.io import UserError, atomic_path, to_jsonable

__all__ = [
    "ChoiceOption",
    "InputError",
    "NumberOption",
    "OptionError",
    "Pipeline",
    "Result",
    "check_number",
    "image_input",
    "load",
    "resolve_device",
]


class OptionError(UserError):
    """A bad option value; ``option`` is its Python name (``max_len``), the CLI shows ``--max-len``."""

    def __init__(self, option: str, value: Any, problem: str) -> None:
        self.option, self.value, self.problem = option, value, problem
        super().__init__(f"{option} {value}: {problem}")

    def as_flag(self) -> UserError:
        """The same error named as a command-line flag."""
        return UserError(f"--{self.option.replace('_', '-')} {self.value}: {self.problem}")


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name must be usable on this machine.

    Raises:
        OptionError: an unknown device, or an accelerator this machine does not have.
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError) as err:
            raise OptionError("device", name, str(err).splitlines()[0]) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("device", name, "CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError("device", name, f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError("device", name, "MPS is not available on this machine")
    return device


def check_number(
    option: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> Any:
    """Return ``value`` when it is a finite number in range, else raise :class:`OptionError`.

    ``None`` (meaning "the checkpoint's setting") passes through.
    """
    if value is None:
        return None
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(option, value, f"expected {kind}")
    if integer and not float(value).is_integer():
        raise OptionError(option, value, "expected an integer")
    if not math.isfinite(value):
        raise OptionError(option, value, "expected a finite number")
    if low is not None and (value <= low if low_open else value < low):
        raise OptionError(option, value, f"expected a value {'>' if low_open else '>='} {low:g}")
    if high is not None and value > high:
        raise OptionError(option, value, f"expected a value <= {high:g}")
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class NumberOption:
    """The allowed range of one numeric pipeline option (see :func:`check_number`)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def check(self, name: str, value: Any) -> Any:
        return check_number(
            name, value, integer=self.integer, low=self.low, high=self.high, low_open=self.low_open
        )


@dataclass(frozen=True)
class ChoiceOption:
    """An option that takes one of a few values."""

    choices: tuple[Any, ...]

    def check(self, name: str, value: Any) -> Any:
        if value is None or any(value is c or (type(value) is type(c) and value == c) for c in self.choices):
            return value
        raise OptionError(name, value, f"expected one of {', '.join(map(repr, self.choices))}")


@dataclass
class InputError:
    """An input that could not be used: ``file`` (``None`` for in-memory inputs) and the problem."""

    file: str | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "error": self.error}


@dataclass
class Result:
    """One input's result.

    Attributes:
        record: the JSON-ready fields (what :meth:`to_dict` returns, plus ``overlay`` once saved).
        attention: the task's attention maps (see the task's pipeline for the keys).
        warnings: problems that did not stop the input (a truncated file, ...).
    """

    record: dict[str, Any]
    attention: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def file(self) -> str | None:
        return self.record.get("file")

    def to_dict(self) -> dict[str, Any]:
        """The app command's ``--json`` record of this input (plain Python types)."""
        return to_jsonable(dict(self.record))

    def overlay(self) -> Any:
        """The attention overlay as a matplotlib figure."""
        raise NotImplementedError

    def save_overlay(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write :meth:`overlay` as a PNG (atomically) and name it in the record's ``overlay`` key."""
        path = Path(path)
        _write_figure(self.overlay(), path, overwrite=overwrite)
        self.record["overlay"] = str(path)
        return path

    def __getitem__(self, key: str) -> Any:
        return self.record[key]


def _write_figure(figure: Any, path: Path, *, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UserError(f"{path}: exists (pass --overwrite to replace it)")
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    figure.clear()


class Pipeline:
    """A trained model with the pre- and post-processing of its task.

    Subclasses (one per task) set ``task`` and ``options`` and implement
    :meth:`build_system` (checkpoint -> model), :meth:`prepare` (one input -> model input, or a
    ``UserError``) and :meth:`forward` (a batch of prepared inputs -> results).
    """

    task: ClassVar[str] = ""
    options: ClassVar[Mapping[str, NumberOption | ChoiceOption]] = {}

    def __init__(self, system: Any, device: torch.device, **options: Any) -> None:
        self.system = system
        self.device = device
        self.batch_size = 16
        self.defaults = self.check_options(options)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def build_system(cls, path: Path, device: torch.device) -> Any:
        """Checkpoint -> the task's model in eval mode on ``device``."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto", **options: Any):
        device = resolve_device(device)
        cls.check_options(options)  # before the model is built
        return cls(cls.build_system(Path(path), device), device, **options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        checked = {}
        for name, value in options.items():
            if name not in cls.options:
                known = ", ".join(cls.options) or "none"
                raise UserError(f"{name}: not an option of the {cls.task} pipeline (options: {known})")
            checked[name] = cls.options[name].check(name, value)
        return checked

    # -- running --------------------------------------------------------------------------------
    def is_single(self, inputs: Any) -> bool:
        """Whether ``inputs`` is one input (anything but a list or tuple)."""
        return not isinstance(inputs, (list, tuple))

    def __call__(self, inputs: Any, *, batch_size: int = 16, **options: Any) -> Any:
        """Run the model: one input -> one :class:`Result`, a list -> a list of them.

        Raises:
            UserError: an input could not be used (the message names it).
        """
        single = self.is_single(inputs)
        items = [inputs] if single else list(inputs)
        results = []
        for result in self.run(items, batch_size=batch_size, **options):
            if isinstance(result, InputError):
                raise UserError(f"{result.file or 'input'}: {result.error}")
            results.append(result)
        return results[0] if single else results

    def run(
        self, inputs: Iterable[Any], *, batch_size: int = 16, **options: Any
    ) -> Iterator[Result | InputError]:
        """Results in input order; an input that cannot be used yields an :class:`InputError`."""
        self.batch_size = check_number("batch_size", batch_size, integer=True, low=1)
        settings = {**self.defaults, **self.check_options(options)}
        items = list(inputs)
        for start in range(0, len(items), batch_size):
            yield from self.run_batch(items[start : start + batch_size], start, settings)

    def run_batch(
        self, items: Sequence[Any], first_index: int, settings: dict[str, Any]
    ) -> list[Result | InputError]:
        """Prepare each item (errors stay per item) and run the usable ones together."""
        out: list[Result | InputError | None] = [None] * len(items)
        ready: list[tuple[int, Any]] = []
        for position, item in enumerate(items):
            name = source_name(item)
            try:
                ready.append((position, self.prepare(item, name, settings)))
            except UserError as err:
                out[position] = InputError(name, _strip_name(str(err), name))
        if ready:
            results = self.forward([prepared for _, prepared in ready], settings)
            for (position, _), result in zip(ready, results):
                out[position] = result
        return out  # type: ignore[return-value]

    def prepare(self, item: Any, name: str | None, settings: dict[str, Any]) -> Any:
        raise NotImplementedError

    def export_spec(self) -> Any:
        """What ``multiattn export`` writes for this task (a :class:`multiattn.export.ExportSpec`)."""
        raise UserError(f"the {self.task} task has no export")

    def forward(self, prepared: list[Any], settings: dict[str, Any]) -> list[Result | InputError]:
        raise NotImplementedError


def source_name(item: Any) -> str | None:
    """The file name of a path input (``str``), ``None`` for in-memory inputs."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return None


def image_input(item: Any) -> Any:
    """An image input as a ``Path`` (read by the task's own reader) or a Pillow image.

    Accepts a path, a Pillow image, a numpy array or a tensor: ``(H, W)``, ``(H, W, C)`` or
    ``(C, H, W)`` (C = 1, 3 or 4), uint8 in [0, 255] or float in [0, 1].

    Raises:
        UserError: anything else.
    """
    import numpy as np
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        return Path(item)
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu()
        if item.dim() == 3 and item.shape[0] in (1, 3, 4) and item.shape[-1] not in (1, 3, 4):
            item = item.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        item = item.numpy()
    if not isinstance(item, np.ndarray):
        raise UserError(
            f"expected an image path, a PIL image, an array or a tensor, not {type(item).__name__}"
        )
    array = item
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or 0 in array.shape:
        raise UserError(f"image array of shape {tuple(item.shape)}: expected (H, W), (H, W, C) or (C, H, W)")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise UserError("image array contains NaN or infinite values")
        array = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _strip_name(message: str, name: str | None) -> str:
    return message.removeprefix(f"{name}: ") if name else message


def _accepts(checkpoint: Mapping[str, Any], system_class: type) -> bool:
    """Whether a checkpoint's hyper-parameters are all arguments of ``system_class``."""
    from multiattn.checkpoint import system_hparams, upgrade_hparams

    hparams = set(upgrade_hparams(system_class, system_hparams(dict(checkpoint))))
    parameters = {name for name in inspect.signature(system_class.__init__).parameters if name != "self"}
    return bool(hparams) and hparams <= parameters


def pipeline_class(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> type[Pipeline]:
    """The registered pipeline for a loaded checkpoint (module docstring)."""
    from multiattn.registry import tasks

    class_path = str((checkpoint.get("hyper_parameters") or {}).get("_class_path") or "")
    registered = tasks()
    if class_path:
        for task in registered.values():
            if task.owns(class_path):
                return task.load("pipeline")
        raise UserError(f"{path}: checkpoint of {class_path}, which no installed multiattn task handles")
    for task in registered.values():
        if _accepts(checkpoint, task.load("system")):
            return task.load("pipeline")
    raise UserError(
        f"{path}: checkpoint of no known task (tried {', '.join(registered) or 'none installed'})"
    )


def load(path: str | os.PathLike, device: str | torch.device = "auto", **options: Any) -> Pipeline:
    """The pipeline of a trained checkpoint.

    Args:
        path: a ``.ckpt`` written by ``multiattn fit``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        **options: the task's decoding options (e.g. ``beam_size``), checked before the model is built.

    Raises:
        UserError: the file is not a usable checkpoint, the device is unavailable, or an option is bad.
    """
    from multiattn.checkpoint import load_checkpoint

    device = resolve_device(device)
    checkpoint = load_checkpoint(path, map_location="cpu")
    cls = pipeline_class(checkpoint, path)
    del checkpoint
    return cls.from_checkpoint(path, device, **options)
