"""The speech pipeline: ``multiattn.load(<speech checkpoint>)`` and ``multiattn transcribe``.

Inputs: audio file paths (wav / flac / ogg / opus / mp3, any rate, mono or stereo, read by
:func:`multiattn.tasks.asr.audio.load_audio`), ``(samples, sample_rate)`` pairs, ``{"array": samples,
"sampling_rate": rate}`` dicts (the Hugging Face datasets layout), or bare numpy arrays / tensors
taken as 16 kHz. Recordings longer than ``max_seconds`` are cut at quiet points
(:func:`multiattn.tasks.asr.audio.segment_audio`), the pieces decoded in batches with the rest (short
pieces together: less padding), and the texts and word times joined.

A result's record (``to_dict()``, the ``--json`` line of ``transcribe``):

- ``file``, ``text``, ``duration`` (seconds);
- ``words``: ``[{"word", "start", "end", "probability"}]``: times in seconds from the CTC forced
  alignment of the decoded tokens (characters, or sentencepiece pieces where a piece starting with
  ``▁`` begins a word); ``probability`` is the mean CTC posterior of the word's tokens over their
  aligned frames;
- ``segments``: ``[{"start", "end", "text", "words"}]``, the words grouped into subtitle cues
  (split at pauses and at 42 characters / 7 seconds: :func:`multiattn.tasks.asr.subtitles.build_segments`);
- ``overlay`` once written (and ``overlay_pieces``, every piece's figure, for a recording decoded
  in several pieces).

``result.attention`` holds ``frame_seconds`` (40 ms) and, per decoded piece, ``pieces[i]``:
``offset`` (s), ``tokens`` (one label per output token), ``times`` (``(S,)`` centre of each encoder
frame in seconds from the start of the recording), ``ctc`` (``(T, S)`` 0/1 frames of each token in
the CTC alignment) and ``attention`` (``(T, S)`` decoder cross-attention, ``None`` in CTC mode or
with ``decoder_attention=False``).

Options: ``mode`` (``"ctc"``, ``"attention"``, ``"joint"``), ``beam_size`` (>= 1),
``ctc_weight`` (in [0, 1]), ``lm_weight`` (>= 0; needs a checkpoint with a language model),
``max_seconds`` (>= 1, default 20), ``decoder_attention`` (keep the decoder's alignment, default
``True``). ``None`` keeps the checkpoint's setting.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiattn.checkpoint import load_system
from multiattn.io import UserError
from multiattn.pipeline import ChoiceOption, NumberOption, Pipeline, Result
from multiattn.tasks.asr.alignment import ctc_token_spans, ctc_word_spans, spans_matrix
from multiattn.tasks.asr.audio import (
    SAMPLE_RATE,
    TruncatedAudioWarning,
    load_audio,
    prepare_waveform,
    segment_audio,
)
from multiattn.tasks.asr.decode import DECODING_MODES
from multiattn.tasks.asr.model import FRAME_SECONDS, frame_time
from multiattn.tasks.asr.subtitles import build_segments

__all__ = ["SpeechPipeline", "SpeechResult"]

DEFAULT_MAX_SECONDS = 20.0


class SpeechResult(Result):
    """A transcribed recording; :meth:`overlay` draws the spectrogram with both alignments."""

    def __init__(
        self, record: dict[str, Any], attention: dict[str, Any], warnings_: list[str], system, decoded
    ):
        super().__init__(record, attention, warnings_)
        self._system, self._decoded = system, decoded  # decoded: [(offset_seconds, DecodeResult)]

    def overlay(self, piece: int = 0):
        """The figure of one decoded piece (the whole recording unless it was longer than ``max_seconds``)."""
        offset, result = self._decoded[piece]
        name = Path(self.file).name if self.file else "audio"
        where = f" [{offset:.1f} s]" if len(self._decoded) > 1 else ""
        return self._system.overlay_figure(result, title=f"{name}{where}: {result.text}")

    def save_overlay(self, path, *, overwrite: bool = True) -> Path:
        """One PNG per decoded piece: ``path``, then ``<stem>_seg001.png``, ... for further pieces."""
        from multiattn.pipeline import _write_figure

        path = Path(path)
        written = []
        for piece in range(len(self._decoded)):
            target = path if piece == 0 else path.with_name(f"{path.stem}_seg{piece:03d}{path.suffix}")
            _write_figure(self.overlay(piece), target, overwrite=overwrite)
            written.append(str(target))
        self.record["overlay"] = written[0]
        if len(written) > 1:
            self.record["overlay_pieces"] = written
        return path


class _Encode(torch.nn.Module):
    """``waveform (B, N)``, ``lengths (B,)`` -> CTC log-probabilities ``(B, S, V)``, encoder lengths ``(B,)``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.model.encode(waveform, lengths)
        return self.model.ctc_log_probs(encoded.memory), encoded.lengths


class SpeechPipeline(Pipeline):
    """Joint CTC/attention speech recognition (:class:`multiattn.tasks.asr.system.ASRSystem`)."""

    task = "asr"
    options = {
        "mode": ChoiceOption(DECODING_MODES),
        "beam_size": NumberOption(integer=True, low=1),
        "ctc_weight": NumberOption(low=0.0, high=1.0),
        "lm_weight": NumberOption(low=0.0),
        "max_seconds": NumberOption(low=1.0),
        "decoder_attention": ChoiceOption((True, False)),
    }

    def __init__(self, system: Any, device: torch.device, **options: Any) -> None:
        super().__init__(system, device, **options)
        system.resolve_lm_weight(self.defaults.get("lm_weight"))
        lengths = system.model.encoder_lengths(torch.arange(1, 10 * SAMPLE_RATE))
        self.min_samples = int(torch.nonzero(lengths >= 1)[0, 0]) + 1  # shortest clip with one encoder frame

    @classmethod
    def build_system(cls, path: Path, device: torch.device):
        from multiattn.tasks.asr.system import ASRSystem

        return load_system(ASRSystem, path, map_location=device)

    @classmethod
    def from_checkpoint(cls, path, device="auto", **options: Any):
        try:
            return super().from_checkpoint(path, device, **options)
        except UserError as err:
            if str(err).startswith(str(path)) or type(err) is not UserError:
                raise
            raise UserError(f"{path}: {err}") from None

    def export_spec(self):
        """The encoder with its CTC head: 16 kHz waveforms and lengths in, CTC log-probabilities out."""
        from multiattn.export import ExportSpec

        generator = torch.Generator().manual_seed(0)
        example = 0.1 * torch.randn(2, 2 * SAMPLE_RATE, generator=generator)
        check = 0.1 * torch.randn(3, 27_000, generator=generator)
        return ExportSpec(
            module=_Encode(self.system.model.cpu()).eval(),
            example=(example, torch.tensor([2 * SAMPLE_RATE, 20_000])),
            check=(check, torch.tensor([27_000, 16_000, 9_000])),
            input_names=["waveform", "lengths"],
            output_names=["ctc_log_probs", "frames"],
            dynamic={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}},
            description="speech encoder: waveform (B, N) at 16 kHz, lengths (B,) -> CTC log-probabilities "
            "(B, S, V) over 40 ms frames, frames (B,)",
        )

    def is_single(self, inputs: Any) -> bool:
        if isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[1], (int, np.integer)):
            return not isinstance(inputs[1], bool)  # (samples, rate)
        return super().is_single(inputs)

    def prepare(self, item: Any, name: str | None, settings: dict[str, Any]) -> Any:
        label = name or "audio"
        caught: list[str] = []
        if name is not None:
            with warnings.catch_warnings(record=True) as records:
                warnings.simplefilter("always", TruncatedAudioWarning)
                wave = load_audio(name, SAMPLE_RATE)
            caught = [str(r.message) for r in records if issubclass(r.category, TruncatedAudioWarning)]
        elif isinstance(item, dict) and {"array", "sampling_rate"} <= set(item):
            wave = prepare_waveform(item["array"], item["sampling_rate"], SAMPLE_RATE, name=label)
        elif isinstance(item, tuple) and len(item) == 2:
            wave = prepare_waveform(item[0], item[1], SAMPLE_RATE, name=label)
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            wave = prepare_waveform(item, SAMPLE_RATE, SAMPLE_RATE, name=label)
        else:
            raise UserError(
                f"expected an audio path, (samples, sample_rate), a datasets-style dict or an array, "
                f"not {type(item).__name__}"
            )
        if wave.numel() < self.min_samples:
            raise UserError(
                f"{label}: too short: {wave.numel() / SAMPLE_RATE:.3f} s, the model needs at least "
                f"{self.min_samples / SAMPLE_RATE:.3f} s"
            )
        max_seconds = settings.get("max_seconds") or DEFAULT_MAX_SECONDS
        pieces = segment_audio(wave, SAMPLE_RATE, max_seconds)
        # A cut can leave a sliver too short to decode at the end: it is (quiet) audio of no word.
        pieces = [p for p in pieces if p[1].numel() >= self.min_samples] or pieces[:1]
        return name, pieces, wave.numel() / SAMPLE_RATE, caught

    def forward(self, prepared: list[Any], settings: dict[str, Any]) -> list[Result]:
        flat = [
            (index, offset, chunk)
            for index, (_, pieces, _, _) in enumerate(prepared)
            for offset, chunk in pieces
        ]
        order = sorted(range(len(flat)), key=lambda i: flat[i][2].numel())  # short pieces together
        keep_attention = settings.get("decoder_attention")
        decoded: dict[int, Any] = {}
        batch = max(self.batch_size, 1)
        for start in range(0, len(order), batch):
            ids = order[start : start + batch]
            lengths = torch.tensor([flat[i][2].numel() for i in ids])
            wave = torch.zeros(len(ids), int(lengths.max()))  # (B, N)
            for row, i in enumerate(ids):
                wave[row, : flat[i][2].numel()] = flat[i][2]
            with torch.inference_mode():
                outs = self.system.decode(
                    wave.to(self.device),
                    lengths.to(self.device),
                    mode=settings.get("mode"),
                    beam_size=settings.get("beam_size"),
                    ctc_weight=settings.get("ctc_weight"),
                    lm_weight=settings.get("lm_weight"),
                    return_attention=True if keep_attention is None else keep_attention,
                )
            decoded.update(zip(ids, outs))
        results: list[Result] = []
        for index, (name, _, duration, caught) in enumerate(prepared):
            own = [(flat[i][1] / SAMPLE_RATE, decoded[i]) for i in range(len(flat)) if flat[i][0] == index]
            results.append(self._result(name, duration, caught, own))
        return results

    def _result(self, name: str | None, duration: float, caught: list[str], own: list[Any]) -> SpeechResult:
        tokenizer = self.system.tokenizer
        texts, words, pieces, segments = [], [], [], []
        for offset, result in own:
            ranges = tokenizer.word_ranges(result.tokens)  # characters or pieces (▁ starts a word)
            spans = ctc_word_spans(result.ctc_log_probs, result.tokens, ranges, blank_id=tokenizer.blank_id)
            own_words = [
                {
                    "word": span.word,
                    "start": round(offset + span.start, 3),
                    "end": round(offset + span.end, 3),
                    "probability": round(span.probability, 4),
                }
                for span in spans or []
            ]
            if result.text:
                texts.append(result.text)
                if spans is None:  # no alignment (too few frames): one segment over the whole piece
                    end = offset + result.ctc_log_probs.shape[0] * FRAME_SECONDS
                    segments.append(
                        {"start": round(offset, 3), "end": round(end, 3), "text": result.text, "words": []}
                    )
                else:
                    segments.extend(build_segments(own_words))
            words.extend(own_words)
            token_spans = ctc_token_spans(result.ctc_log_probs, result.tokens, blank_id=tokenizer.blank_id)
            frames = result.ctc_log_probs.shape[0]
            pieces.append(
                {
                    "offset": offset,
                    "tokens": tokenizer.token_labels(result.tokens),
                    "times": offset + frame_time(torch.arange(frames, dtype=torch.float32)),
                    "ctc": spans_matrix(token_spans, frames) if token_spans else None,
                    "attention": result.attention,
                }
            )
        record = {
            "file": name,
            "text": " ".join(texts),
            "words": words,
            "duration": round(duration, 3),
            "segments": segments,
        }
        attention = {"frame_seconds": FRAME_SECONDS, "pieces": pieces}
        return SpeechResult(record, attention, caught, self.system, own)


PIPELINE = SpeechPipeline  # named by the task's declaration (tasks/asr/task.py)
