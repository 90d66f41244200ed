"""The spatial transformer classifier's declaration (its ``multiattn.apps`` entry point: ``multiattn classify``)."""

from multiattn.registry import Inputs, Task

TASK = Task(
    name="stn",
    title="classifier",
    help="classify images with a spatial transformer checkpoint (sampled region overlays)",
    system=".system:STNSystem",
    inputs=Inputs("image", ".sources.images:IMAGE_EXTENSIONS"),
)
