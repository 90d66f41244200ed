"""The speech recogniser's declaration (its ``multiattn.apps`` entry point: ``multiattn transcribe``)."""

from multiattn.registry import Task

TASK = Task(
    name="asr",
    title="speech",
    package=__package__,
    help="transcribe audio with a speech checkpoint (attention / CTC alignment overlays)",
    system=".system:ASRSystem",
    input_extensions=".app:AUDIO_EXTENSIONS",
    input_kind="audio",
)
