"""The captioning task's declaration (its ``multiattn.apps`` entry point: ``multiattn caption``)."""

from multiattn.registry import Task

TASK = Task(
    name="captioning",
    title="captioning",
    package=__package__,
    help="caption images with a captioning checkpoint (per-word attention overlays)",
    app=".app:main",
    system=".system:CaptioningSystem",
    report=".report:build_section",
    input_extensions=".images:IMAGE_EXTENSIONS",
    input_kind="image",
    renderer="explorer.js",
)
