"""The spatial transformer classifier's declaration (its ``multiattn.apps`` entry point: ``multiattn classify``)."""

from multiattn.registry import Task

TASK = Task(
    name="stn",
    title="classifier",
    package=__package__,
    help="classify images with a spatial transformer checkpoint (sampled region overlays)",
    system=".system:STNSystem",
    input_extensions=".sources.images:IMAGE_EXTENSIONS",
    input_kind="image",
)
