"""The speech recogniser's declaration (its ``multiattn.apps`` entry point: ``multiattn transcribe``)."""

from multiattn.registry import Inputs, Task

TASK = Task(
    name="asr",
    title="speech",
    help="transcribe audio with a speech checkpoint (attention / CTC alignment overlays)",
    system=".system:ASRSystem",
    inputs=Inputs("audio", ".app:AUDIO_EXTENSIONS"),
)
