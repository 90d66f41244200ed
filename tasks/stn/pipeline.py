"""The classifier's pipeline: ``multiattn.load(<stn checkpoint>)`` and ``multiattn classify``.

Each image is converted exactly as in training (:func:`multiattn.tasks.stn.sources.images.prepare_image`:
any mode and size, letterboxed to the model's input), classified, and the sampled region's four
corners are mapped back through the letterbox into the *user's* pixel coordinates (pixel centres
at integers, ``x`` right, ``y`` down).

A result's record (``to_dict()``, the ``--json`` line of ``classify``) is
``{"file", "label", "probabilities": {class: p}, "corners": [[x, y] x4] | null, "theta"}`` (+
``"overlay"`` once written); ``corners`` is ``null`` for a checkpoint trained without the
transformer. ``result.attention`` holds ``corners`` (``(4, 2)`` tensor in the user's pixels, or
``None``), ``corners_decoded`` (the same on the decoded picture, which a large file is reduced to
while decoding), ``theta`` (``(2, 3)``; ``(16, 2)`` control points for a thin-plate spline) and
``warped`` (the ``(C, H, W)`` region the classifier saw); for a thin-plate spline also
``grid_decoded`` (``(10, 17, 2)``: the output's grid lines bent into the decoded picture, which the
overlay draws).

Options: ``invert`` (``None`` = automatic, ``True`` / ``False`` force or forbid inverting to
light-on-dark).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from multiattn.checkpoint import load_system
from multiattn.pipeline import ChoiceOption, Pipeline, Result, image_input
from multiattn.stn import region_grid_lines, theta_kind
from multiattn.tasks.stn.sources.images import image_to_array, prepare_image, read_image

__all__ = ["ClassifierPipeline", "ClassifierResult"]


class ClassifierResult(Result):
    """A classified image; :meth:`overlay` draws the region beside the warped image."""

    def __init__(
        self, record: dict[str, Any], attention: dict[str, Any], image: Any, channels: int, title: str
    ):
        super().__init__(record, attention)
        self._image, self._channels, self._title = image, channels, title

    def overlay(self):
        from multiattn.tasks.stn.overlay import region_figure

        corners = self.attention["corners_decoded"]  # the picture may be reduced from the file's size
        grid = self.attention.get("grid_decoded")  # a thin-plate spline's warped grid, else None
        return region_figure(
            [image_to_array(self._image, channels=self._channels)],  # (h, w, C) as the user gave it
            [None if corners is None else corners.numpy()],
            [self.attention["warped"].numpy()],
            [self._title],
            pairs_per_row=1,
            panel_inches=2.4,
            grids=None if grid is None else [grid.numpy()],
        )


class _Classify(torch.nn.Module):
    """Images ``(B, C, H, W)`` in [0, 1] -> class probabilities ``(B, K)`` (and ``theta (B, 2, 3)``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(images)
        probabilities = output.logits.float().softmax(dim=1)
        return (probabilities,) if output.theta is None else (probabilities, output.theta.float())


class ClassifierPipeline(Pipeline):
    """Spatial transformer classifier (:class:`multiattn.tasks.stn.system.STNSystem`)."""

    task = "stn"
    options = {"invert": ChoiceOption((None, True, False))}

    @classmethod
    def build_system(cls, path: Path, device: torch.device):
        from multiattn.tasks.stn.system import STNSystem

        return load_system(STNSystem, path, map_location=device, log_overlays=False)

    def export_spec(self):
        """The classifier end to end: prepared images in, probabilities (and ``theta``) out."""
        from multiattn.export import ExportSpec

        hp = self.system.hparams
        shape = (int(hp.in_channels), int(hp.input_size[0]), int(hp.input_size[1]))
        generator = torch.Generator().manual_seed(0)
        example, check = (torch.rand(n, *shape, generator=generator) for n in (2, 3))
        module = _Classify(self.system.model.cpu()).eval()
        outputs = ["probabilities"] + (["theta"] if self.system.model.transformer is not None else [])
        return ExportSpec(
            module=module,
            example=(example,),
            check=(check,),
            input_names=["images"],
            output_names=outputs,
            dynamic={"images": {0: "batch"}},
            description=f"classifier: images (B, {shape[0]}, {shape[1]}, {shape[2]}) in [0, 1] -> "
            + ", ".join(outputs),
        )

    def prepare(self, item: Any, name: str | None, settings: dict[str, Any]) -> Any:
        hp = self.system.hparams
        image = image_input(item)
        size = (int(hp.input_size[0]), int(hp.input_size[1]))
        if isinstance(image, Path):
            image = read_image(image, size)  # upright, reduced while decoding
        tensor, letterbox = prepare_image(
            image,
            channels=hp.in_channels,
            size=size,
            light_on_dark=hp.light_on_dark,
            invert=settings.get("invert"),
        )
        return name, image, tensor, letterbox

    def forward(self, prepared: list[Any], settings: dict[str, Any]) -> list[Result]:
        hp = self.system.hparams
        tensors = [tensor for _, _, tensor, _ in prepared]
        with torch.inference_mode():
            outputs = self.system.predict_step(torch.stack(tensors).to(self.device))  # (B, C, H, W)
        names = self.system.class_names
        results: list[Result] = []
        for position, (name, image, _, letterbox) in enumerate(prepared):
            probabilities = outputs["probabilities"][position].cpu()
            label = int(outputs["label"][position])
            record: dict[str, Any] = {
                "file": name,
                "label": names[label],
                "probabilities": {n: round(float(p), 6) for n, p in zip(names, probabilities)},
                "corners": None,
                "theta": None,
            }
            corners = theta = drawn = None
            if outputs["corners"] is not None:
                corners = letterbox.to_original(outputs["corners"][position].cpu())  # (4, 2) file pixels
                drawn = letterbox.to_decoded(outputs["corners"][position].cpu())  # on the decoded picture
                theta = outputs["theta"][position].cpu()
                record["corners"] = [[round(float(x), 3), round(float(y), 3)] for x, y in corners]
                record["theta"] = theta.tolist()
            attention = {"corners": corners, "theta": theta, "warped": outputs["warped"][position].cpu()}
            attention["corners_decoded"] = drawn
            if theta is not None and theta_kind(theta[None]) == "tps_control":  # curved region: its grid
                lines = region_grid_lines(
                    theta[None],
                    tuple(tensors[0].shape[-2:]),
                    align_corners=self.system.model_config.transformer.align_corners,
                )
                attention["grid_decoded"] = letterbox.to_decoded(lines[0])  # (L, P, 2)
            title = f"{names[label]} ({float(probabilities[label]):.2f})"
            results.append(ClassifierResult(record, attention, image, hp.in_channels, title))
        return results


PIPELINE = ClassifierPipeline  # named by the task's declaration (tasks/stn/task.py)
