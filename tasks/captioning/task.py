"""The captioning task's declaration (its ``multiattn.apps`` entry point: ``multiattn caption``)."""

from multiattn.registry import Inputs, Task

TASK = Task(
    name="captioning",
    help="caption images with a captioning checkpoint (per-word attention overlays)",
    system=".system:CaptioningSystem",
    inputs=Inputs("image", ".images:IMAGE_EXTENSIONS"),
)
