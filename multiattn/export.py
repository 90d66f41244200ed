"""``multiattn export --ckpt C --format onnx|torch-export --out F``: a trained model for serving.

What is exported comes from the task's pipeline (:meth:`multiattn.pipeline.Pipeline.export_spec`):
the classifier end to end (images in, class probabilities and the sampled region's ``theta``
out), the captioning image encoder (images in, the feature grid the decoder attends over out) and
the speech encoder (waveforms and their lengths in, CTC log-probabilities and encoder lengths out).
Autoregressive decoding (beam search) stays in Python: it is a loop over the decoder, not a graph.

- ``torch-export``: a ``torch.export`` program (``torch.export.save``; load it with
  ``torch.export.load(F).module()``), batch size (and, for speech, the number of samples) dynamic.
- ``onnx``: an ONNX model from ``torch.onnx.export(dynamo=True)`` with the same dynamic axes; it
  needs the ``onnx`` and ``onnxscript`` packages (``pip install "multiattn[export]"``).

After writing, the command runs the exported model on an input of another batch size than the one
it was traced with and compares it with the eager model (ONNX through ``onnxruntime`` when it is
installed), printing the largest absolute difference; a difference above ``1e-3`` is an error.
The file is written atomically, and an existing one is kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multiattn.io import UserError, atomic_path

__all__ = ["EXPORT_FORMATS", "ExportSpec", "export_model", "main"]

EXPORT_FORMATS = ("onnx", "torch-export")
TOLERANCE = 1e-3


@dataclass
class ExportSpec:
    """What a pipeline exports.

    Attributes:
        module: takes the inputs positionally, returns a tuple of tensors.
        example: inputs to trace with (batch of 2).
        check: inputs of another batch size to compare the exported model with eager.
        input_names, output_names: names of the graph's inputs and outputs.
        dynamic: per input name, ``{dim: name}`` of its dynamic dimensions.
        description: one line saying what the graph computes.
    """

    module: nn.Module
    example: tuple[torch.Tensor, ...]
    check: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    description: str = ""


def _dynamic_shapes(spec: ExportSpec) -> dict[str, dict[int, Any]]:
    return {
        name: dict.fromkeys(spec.dynamic.get(name, {}), torch.export.Dim.DYNAMIC) for name in spec.input_names
    }


def export_model(spec: ExportSpec, fmt: str, out: Path) -> float:
    """Write ``spec`` as ``fmt`` to ``out`` (atomically) and return the largest difference from eager."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(EXPORT_FORMATS)}")
    module = spec.module.eval()
    with torch.inference_mode():
        expected = [t.detach().float() for t in module(*spec.check)]
    if fmt == "torch-export":
        program = torch.export.export(module, spec.example, dynamic_shapes=_dynamic_shapes(spec))
        with atomic_path(out, suffix=".pt2") as tmp:
            torch.export.save(program, tmp)
        got = torch.export.load(out).module()(*spec.check)
        got = [t.detach().float() for t in got]
    else:
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise UserError(
                '--format onnx needs the onnx and onnxscript packages: pip install "multiattn[export]"'
            ) from None
        with atomic_path(out, suffix=".onnx") as tmp:
            torch.onnx.export(
                module,
                spec.example,
                str(tmp),
                dynamo=True,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=_dynamic_shapes(spec),
                external_data=False,
                verbose=False,
            )
        try:
            import onnxruntime
        except ImportError:
            return float("nan")  # written, not checked
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        feeds = {name: tensor.cpu().numpy() for name, tensor in zip(spec.input_names, spec.check)}
        got = [torch.from_numpy(array).float() for array in session.run(None, feeds)]
    if len(got) != len(expected):
        raise RuntimeError(f"exported model returns {len(got)} outputs, eager {len(expected)}")
    return max(float((a.cpu() - b.cpu()).abs().max()) if a.numel() else 0.0 for a, b in zip(got, expected))


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="multiattn export",
        description="Export a checkpoint's model (the classifier end to end; the captioning and speech "
        "encoders) as ONNX or a torch.export program, checked against the eager model.",
    )
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by `multiattn fit` (.ckpt)")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="onnx or torch-export")
    parser.add_argument("--out", required=True, type=Path, help="the file to write (.onnx or .pt2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``multiattn export``."""
    import multiattn
    from multiattn.apps import check_writable_dir

    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        out: Path = args.out
        if out.exists() and (out.is_dir() or not args.overwrite):
            raise UserError(f"--out {out}: exists (pass --overwrite to replace a file)")
        check_writable_dir(out.parent if str(out.parent) else Path("."), "--out")
        pipeline = multiattn.load(args.ckpt, device="cpu")  # exported graphs are traced on the CPU
        spec = pipeline.export_spec()
        difference = export_model(spec, args.format, out)
    except UserError as err:
        print(f"multiattn export: error: {err}", file=sys.stderr)
        return 2
    if difference != difference:  # NaN: ONNX written, onnxruntime not installed
        checked = "not checked (onnxruntime not installed)"
    else:
        checked = f"max |exported - eager| = {difference:.2e}"
    print(f"{out}: {spec.description}; {checked}")
    if difference > TOLERANCE:
        print(
            f"multiattn export: error: exported model differs from eager by {difference:.2e}", file=sys.stderr
        )
        return 1
    return 0
