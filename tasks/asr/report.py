"""The speech section of ``multiattn report``: per utterance, the log-mel spectrogram with the
decoder's attention alignment and the CTC forced alignment (Chorowski et al. 2015; Watanabe et al.
2017), the transcript with each word's time, the reference with word errors marked, and the audio.

Split mode: the first ``limit`` utterances of the split of the data the checkpoint was trained on
(rebuilt from its stored datamodule hyper-parameters; the embedded espeak-ng corpus by default:
FLAC files + JSON-lines manifests with the true word times). Each hypothesis word gets a status
from jiwer's word alignment against the reference (``ok``, ``sub`` substituted, ``ins`` inserted);
reference words the hypothesis lost are listed as ``deleted``. Per utterance: WER, CER and the mean
word-start error of the CTC alignment over the correctly recognised words; the section: corpus
WER / CER (:mod:`multiattn.metrics.speech`) and the word-start error of the attention and of the
CTC alignment against the true times (median ms, share within 50 / 100 ms). Inputs mode: the
user's audio files, read as ``multiattn transcribe`` reads them (any rate, mono or stereo).

Assets: ``<n>.wav`` (16 kHz 16-bit mono copy, what the page's player plays) and ``<n>.png``, the
overlay of :mod:`multiattn.tasks.asr.overlay` (true word starts as dashed lines when known). Word times come
from the CTC forced alignment of the decoded characters (the attention's when that fails).

Shape legend: ``B`` batch, ``N`` samples, ``S`` encoder frames, ``T`` characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jiwer
import torch

from multiattn.checkpoint import load_system
from multiattn.io import UserError, atomic_path
from multiattn.metrics.speech import boundary_errors, error_counts, normalize_transcript
from multiattn.tasks.asr.alignment import attention_word_starts, ctc_word_spans
from multiattn.tasks.asr.audio import SAMPLE_RATE, load_audio
from multiattn.tasks.asr.data import ASRDataModule
from multiattn.tasks.asr.features import HOP_SECONDS
from multiattn.tasks.asr.system import ASRSystem
from multiattn.tasks.common.report import SectionRequest, build_from, datamodule_from_checkpoint, write_wav

__all__ = ["build_section", "word_statuses", "MAX_SECONDS"]

MAX_SECONDS = 30.0
"""Longer inputs are skipped: ``multiattn transcribe`` segments long recordings, the page does not."""
STAGE_OF_SPLIT = {"test": "test", "val": "validate", "train": "fit"}
# The page shows the overlay about 400 px wide; 80 dpi (not the figure's 100) keeps the labels
# sharp at that size. The noisy spectrogram compresses badly: fewer pixels save little (a 3 s
# utterance: 83 KB at 100 dpi, 65 KB at 60), so the resolution stays close to the figure's.
FIGURE_DPI = 80


def word_statuses(reference: str, hypothesis_words: list[str]) -> tuple[list[str], list[str]]:
    """``ok`` / ``sub`` / ``ins`` per hypothesis word, and the reference words it deleted.

    From jiwer's minimum-edit word alignment of the normalised texts.
    """
    ref_words = normalize_transcript(reference).split()
    # One token per displayed word, whatever normalisation does inside it ("a?b" stays one word).
    hyp_words = ["".join(normalize_transcript(w).split()) or "?" for w in hypothesis_words]
    if not ref_words:
        return ["ins"] * len(hyp_words), []
    if not hyp_words:
        return [], ref_words
    statuses = ["ok"] * len(hyp_words)
    deleted: list[str] = []
    alignment = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words)).alignments[0]
    for chunk in alignment:
        if chunk.type == "delete":
            deleted.extend(ref_words[chunk.ref_start_idx : chunk.ref_end_idx])
            continue
        tag = {"equal": "ok", "substitute": "sub", "insert": "ins"}[chunk.type]
        for index in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
            statuses[index] = tag
    return statuses, deleted


def _word_times(system: ASRSystem, result, ranges: list) -> list[tuple[str, float, float]]:
    """Each hypothesis word with its start and end (s): CTC forced alignment, else attention.

    ``ranges``: ``(word, first_token, last_token)`` per word (``tokenizer.word_ranges``).
    """
    words = [word for word, _, _ in ranges]
    spans = ctc_word_spans(result.ctc_log_probs, result.tokens, ranges, blank_id=system.tokenizer.blank_id)
    if spans is not None:
        return [(s.word, s.start, s.end) for s in spans]
    duration = result.features.shape[0] * HOP_SECONDS
    starts = [0.0] * len(words)
    if result.attention is not None and result.attention.shape[0] >= len(result.tokens) and words:
        starts = attention_word_starts(result.attention, ranges)
    ends = [*starts[1:], duration]
    return [(w, s, max(s, e)) for w, s, e in zip(words, starts, ends)]


class _Accumulator:
    """Corpus totals of the section: texts for WER / CER and matched word starts."""

    def __init__(self) -> None:
        self.references: list[str] = []
        self.hypotheses: list[str] = []
        self.align: dict[str, list[float]] = {"true": [], "attention": [], "ctc": [], "true_ctc": []}

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not self.references:
            return out
        words = error_counts(self.references, self.hypotheses, unit="word")
        chars = error_counts(self.references, self.hypotheses, unit="char")
        out["WER"] = words["errors"] / max(words["reference_units"], 1)
        out["CER"] = chars["errors"] / max(chars["reference_units"], 1)
        for source, truth, name in (("ctc", "true_ctc", "CTC"), ("attention", "true", "attention")):
            if self.align[source]:
                stats = boundary_errors(self.align[source], self.align[truth])
                out[f"{name} word start, median error (ms)"] = stats["median_abs_error_ms"]
                out[f"{name} word start within 100 ms"] = stats["within_100ms"]
        return out


def _decode_and_write(
    request: SectionRequest,
    system: ASRSystem,
    batch: list[tuple[str, torch.Tensor, str | None, list[dict[str, Any]] | None]],
    items: list[dict[str, Any]],
    totals: _Accumulator,
) -> None:
    """Decode ``[(file, waveform (N,), reference | None, true words | None)]`` and add their items."""
    lengths = torch.tensor([wave.numel() for _, wave, _, _ in batch])
    waveform = torch.zeros(len(batch), int(lengths.max()))  # (B, N) zero padded
    for row, (_, wave, _, _) in enumerate(batch):
        waveform[row, : wave.numel()] = wave
    results = system.decode(waveform.to(request.device), lengths.to(request.device), return_attention=True)
    for (file, wave, reference, true_words), result in zip(batch, results):
        number = len(items)
        timed = _word_times(system, result, system.tokenizer.word_ranges(result.tokens))
        audio_path = request.assets / f"{number:04d}.wav"
        image_path = request.assets / f"{number:04d}.png"
        write_wav(wave.numpy(), SAMPLE_RATE, audio_path)
        true_starts = [float(w["start"]) for w in true_words] if true_words else None
        figure = system.overlay_figure(result, true_starts=true_starts, title=Path(file).name)
        with atomic_path(image_path) as tmp:
            figure.savefig(tmp, format="png", dpi=FIGURE_DPI)
        figure.clear()
        statuses, deleted = (
            word_statuses(reference, [w for w, _, _ in timed])
            if reference is not None
            else (["ok"] * len(timed), [])
        )
        item: dict[str, Any] = {
            "file": file,
            "audio": request.relative(audio_path),
            "spectrogram": request.relative(image_path),
            "duration": round(wave.numel() / SAMPLE_RATE, 3),
            "text": system.tokenizer.decode(result.tokens).strip(),
            "words": [
                {"word": w, "start": round(s, 3), "end": round(e, 3), "status": status}
                for (w, s, e), status in zip(timed, statuses)
            ],
            "deleted": deleted,
        }
        if reference is not None:
            item["reference"] = reference
            words = error_counts([reference], [result.text], unit="word")
            letters = error_counts([reference], [result.text], unit="char")
            scores: dict[str, Any] = {
                "WER": round(words["errors"] / max(words["reference_units"], 1), 4),
                "CER": round(letters["errors"] / max(letters["reference_units"], 1), 4),
            }
            totals.references.append(reference)
            totals.hypotheses.append(result.text)
            if true_words:
                align = system.alignment_errors(result, true_words)
                for key, values in align.items():
                    totals.align[key].extend(values)
                if align["ctc"]:
                    errors = [abs(p - t) * 1000 for p, t in zip(align["ctc"], align["true_ctc"])]
                    scores["start error (ms)"] = round(sum(errors) / len(errors), 1)
            item["scores"] = scores
        items.append(item)


def _split_section(request: SectionRequest, system: ASRSystem):
    datamodule, where = datamodule_from_checkpoint(
        request.checkpoint, __package__, ASRDataModule, request.data_dir
    )
    datamodule.setup(STAGE_OF_SPLIT[request.split])
    dataset = datamodule.datasets[request.split]
    count = min(request.limit, len(dataset))
    items: list[dict[str, Any]] = []
    totals = _Accumulator()
    pending: list = []
    for index in request.progress(range(count), count):
        try:
            utterance = dataset.load(index)
        except UserError as err:
            request.errors.append((str(dataset.entries[index].path), str(err).split(": ", 1)[-1]))
            continue
        words = None
        if utterance.words is not None:
            words = [{"word": w.word, "start": w.start, "end": w.end} for w in utterance.words]
        pending.append((utterance.path, utterance.waveform, utterance.text, words))
        if len(pending) == request.batch_size:
            _decode_and_write(request, system, pending, items, totals)
            pending = []
    if pending:
        _decode_and_write(request, system, pending, items, totals)
    data = f"{where}, {request.split} split: first {len(items)} of {len(dataset)}"
    return items, totals.metrics(), data


def _inputs_section(request: SectionRequest, system: ASRSystem):
    items: list[dict[str, Any]] = []
    totals = _Accumulator()
    pending: list = []
    files = list(request.inputs or [])
    for path in request.progress(files, len(files)):
        try:
            wave = load_audio(path, SAMPLE_RATE)
        except UserError as err:
            request.errors.append((str(path), str(err).removeprefix(f"{path}: ")))
            continue
        if wave.numel() > MAX_SECONDS * SAMPLE_RATE:
            message = f"longer than {MAX_SECONDS:.0f} s; `multiattn transcribe` decodes long recordings"
            request.errors.append((str(path), message))
            continue
        pending.append((str(path), wave, None, None))
        if len(pending) == request.batch_size:
            _decode_and_write(request, system, pending, items, totals)
            pending = []
    if pending:
        _decode_and_write(request, system, pending, items, totals)
    return items, {}, f"{len(items)} audio file(s) given with --inputs"


@torch.inference_mode()
def build_section(request: SectionRequest) -> dict[str, Any]:
    """The report section (``task: "asr"``) of one speech checkpoint."""
    system = load_system(ASRSystem, request.ckpt, map_location=request.device, log_overlays=False)
    return build_from(request, system, _split_section, _inputs_section)
