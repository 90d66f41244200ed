"""The captioning task's declaration (its ``multiattn.apps`` entry point: ``multiattn caption``)."""

from multiattn.registry import Task

TASK = Task(
    name="captioning",
    package=__package__,
    help="caption images with a captioning checkpoint (per-word attention overlays)",
    system=".system:CaptioningSystem",
    input_extensions=".images:IMAGE_EXTENSIONS",
    input_kind="image",
)
