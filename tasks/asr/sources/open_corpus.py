"""The open-vocabulary speech corpus: real and wide-grammar sentences, every English espeak-ng voice.

Like the grammar corpus (``corpus.py``: same synthesis, timings, chunking and determinism), with
the text of :mod:`multiattn.tasks.asr.sources.opentext` and a wider voice set, cached by
:func:`multiattn.datacache.cached_generate` under ``<data_dir>/open-<size>-seed<seed>/``::

    manifest.json
    train.jsonl  validation.jsonl  test.jsonl  test_heldout_text.jsonl  test_unseen_voices.jsonl
    train_text.txt           # every training sentence (audio or not): the tokenizer's and the LM's text
    test_other_synth.txt     # the sentences of the independent-synthesiser split (other_synth.py)
    <split>/<split>_NNNNN.flac

Splits:

* ``train``, ``validation``, ``test``: WordNet usage examples and wide-grammar sentences, training voices;
* ``test_heldout_text``: the held-out text domain (fortunes), training voices;
* ``test_unseen_voices``: in-domain sentences, voices whose variant (timbre) is never trained on;
* ``test_other_synth`` (generated apart, on demand, by ``other_synth.py``): flite and festival voices.

Voices: every English accent of espeak-ng (:data:`ACCENTS`) with every voice variant of its data
except :data:`UNSEEN_VARIANTS` in training; ``test_unseen_voices`` pairs the accents with the held-out
variants. Each utterance draws an accent, a variant, a rate and a pitch. With
``neural_voice_fraction > 0`` that share of the *training* utterances is spoken by piper's neural
voice instead (:mod:`~multiattn.tasks.asr.sources.piper_voice`); the evaluation splits stay as they
are without it, so figures with and without the neural voice compare one to one.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

from multiattn.datacache import cached_generate
from multiattn.tasks.asr.sources.corpus import CHUNK_SIZE, SAMPLE_RATE, _Job, corpus_summary, synthesize_jobs
from multiattn.tasks.asr.sources.opentext import FORTUNES_DIR, WORDNET_DIR, open_vocabulary_texts
from multiattn.tasks.asr.sources.piper_voice import PIPER_VOICE, check_neural_voice_fraction

__all__ = [
    "OPEN_SPLITS",
    "OPEN_CORPUS_SIZES",
    "ACCENTS",
    "UNSEEN_VARIANTS",
    "espeak_variants",
    "open_corpus",
    "read_lines",
]

OPEN_SPLITS = ("train", "validation", "test", "test_heldout_text", "test_unseen_voices")
OPEN_CORPUS_SIZES: dict[str, dict[str, int]] = {
    # utterances per split, the independent-synthesiser split's sentences, wide-grammar sentences
    "tiny": {"train": 24, "validation": 6, "test": 6, "test_heldout_text": 6, "test_unseen_voices": 6,
             "test_other_synth": 6, "grammar_sentences": 200},
    "small": {"train": 2000, "validation": 150, "test": 200, "test_heldout_text": 200,
              "test_unseen_voices": 200, "test_other_synth": 120, "grammar_sentences": 10_000},
    "default": {"train": 20_000, "validation": 400, "test": 500, "test_heldout_text": 400,
                "test_unseen_voices": 500, "test_other_synth": 300, "grammar_sentences": 40_000},
}  # fmt: skip
ACCENTS = (
    "en",
    "en-us",
    "en-us-nyc",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
"""espeak-ng's English accents (``en-shaw`` is left out: a spelling reform, read from its own script)."""
UNSEEN_VARIANTS = (
    "m7",
    "m8",
    "f4",
    "f5",
    "Annie",
    "belinda",
    "edward",
    "grandpa",
    "linda",
    "quincy",
    "steph",
    "travis",
)
"""Voice variants (timbres) held out of training: ``test_unseen_voices`` speaks only with these."""
GENERATOR_VERSION = 1


def espeak_variants() -> list[str]:
    """Every voice variant in the bundled espeak-ng data (``voices/!v``), sorted."""
    from multiattn.extras import require

    loader = require("espeakng_loader", "the embedded speech corpus (espeak-ng)")
    return sorted(os.listdir(Path(loader.get_data_path()) / "voices" / "!v"))


def read_lines(path: str | Path) -> list[str]:
    """The non-empty lines of a text file (``train_text.txt``)."""
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def write_lines(path: Path, lines: list[str]) -> None:
    """One line per item (``train_text.txt``; read back by :func:`read_lines`)."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _voice(rng: random.Random, variants: list[str], plain: bool) -> str:
    accent = rng.choice(ACCENTS)
    return accent if plain and rng.random() < 0.1 else f"{accent}+{rng.choice(variants)}"


def _generate(root: Path, params: dict[str, Any], num_workers: int, progress: bool) -> dict[str, Any]:
    sizes = params["split_sizes"]
    eval_splits = ("validation", "test", "test_unseen_voices", "test_other_synth")
    texts = open_vocabulary_texts(
        {split: sizes[split] for split in eval_splits},
        heldout_size=sizes["test_heldout_text"],
        grammar_sentences=sizes["grammar_sentences"],
        seed=params["seed"],
        wordnet_dir=params["wordnet_dir"],
        fortunes_dir=params["fortunes_dir"],
        vocabulary_size=params["vocabulary_size"],
    )
    write_lines(root / "train_text.txt", texts["train"])
    write_lines(root / "test_other_synth.txt", texts["test_other_synth"])
    if len(texts["train"]) < sizes["train"]:
        raise ValueError(f"only {len(texts['train'])} training sentences for {sizes['train']} utterances")
    rng = random.Random(params["seed"] + 2)
    # its own stream, so the espeak draws (and every evaluation split) are the same with or without it
    neural_rng = random.Random(params["seed"] + 3)
    neural = params.get("neural_voice_fraction", 0.0)
    jobs = []
    for split in OPEN_SPLITS:
        unseen = split == "test_unseen_voices"
        variants = params["unseen_variants"] if unseen else params["train_variants"]
        for index, text in enumerate(texts[split][: sizes[split]]):
            job = _Job(
                split=split,
                index=index,
                text=text,
                voice=_voice(rng, variants, plain=not unseen),
                rate=rng.randint(*params["rate_range"]),
                pitch=rng.randint(*params["pitch_range"]),
                seed=rng.getrandbits(31),
            )
            if split == "train" and neural > 0 and neural_rng.random() < neural:
                job = dataclasses.replace(job, voice=PIPER_VOICE, pitch=None, engine="piper")
            jobs.append(job)
    summary = corpus_summary(synthesize_jobs(root, jobs, OPEN_SPLITS, num_workers, progress))
    return {**summary, "train_text_sentences": len(texts["train"])}


def open_corpus(
    data_dir: str | os.PathLike = "data/asr/embedded",
    *,
    size: str = "default",
    seed: int = 0,
    split_sizes: dict[str, int] | None = None,
    rate_range: tuple[int, int] = (120, 170),
    pitch_range: tuple[int, int] = (35, 65),
    vocabulary_size: int = 20_000,
    neural_voice_fraction: float = 0.0,
    wordnet_dir: str = WORDNET_DIR,
    fortunes_dir: str = FORTUNES_DIR,
    num_workers: int = 2,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate (or reuse from cache) the open-vocabulary corpus; return its files.

    Args:
        data_dir: parent of the cache folder ``open-<size>-seed<seed>``.
        size: a key of :data:`OPEN_CORPUS_SIZES`.
        seed: texts, voices, rates and pitches all derive from it.
        split_sizes: overrides the preset's counts (keys of :data:`OPEN_CORPUS_SIZES` entries).
        rate_range: inclusive speaking-rate range, words per minute.
        pitch_range: inclusive base-pitch range (0..100, espeak's 50 = normal).
        vocabulary_size: words of the frequency list the wide grammar draws from.
        neural_voice_fraction: share of the training utterances spoken by piper's neural voice
            (needs the ``neural-voice`` extra); the evaluation splits are not affected.
        wordnet_dir: WordNet's database (Debian ``wordnet-base``).
        fortunes_dir: the held-out domain's fortune files (Debian ``fortunes-min``).
        num_workers: worker processes (output does not depend on it).
        progress: show a progress bar while generating.

    Returns:
        ``{split: <cache>/<split>.jsonl}`` for :data:`OPEN_SPLITS`, plus ``"train_text"`` and
        ``"test_other_synth_text"`` (the two text files).
    """
    if size not in OPEN_CORPUS_SIZES:
        raise ValueError(f"unknown corpus size {size!r}; valid: {', '.join(OPEN_CORPUS_SIZES)}")
    sizes = {**OPEN_CORPUS_SIZES[size], **(split_sizes or {})}
    if set(sizes) != set(OPEN_CORPUS_SIZES[size]):
        raise ValueError(
            f"split_sizes keys must be among {sorted(OPEN_CORPUS_SIZES[size])}, got {sorted(sizes)}"
        )
    check_neural_voice_fraction(neural_voice_fraction)
    variants = espeak_variants()
    params = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "split_sizes": sizes,
        "accents": list(ACCENTS),
        "train_variants": [v for v in variants if v not in UNSEEN_VARIANTS],
        "unseen_variants": [v for v in UNSEEN_VARIANTS if v in variants],
        "rate_range": list(rate_range),
        "pitch_range": list(pitch_range),
        "vocabulary_size": vocabulary_size,
        "wordnet_dir": str(wordnet_dir),
        "fortunes_dir": str(fortunes_dir),
        "chunk_size": CHUNK_SIZE,
        "sample_rate": SAMPLE_RATE,
    }
    suffix = ""
    if neural_voice_fraction > 0:  # absent at 0: caches made before the option stay valid
        params["neural_voice_fraction"] = float(neural_voice_fraction)
        suffix = f"-neural{neural_voice_fraction:g}"
    root = Path(data_dir) / f"open-{size}-seed{seed}{suffix}"
    cached_generate(root, params, lambda folder: _generate(folder, params, num_workers, progress))
    return {
        **{split: root / f"{split}.jsonl" for split in OPEN_SPLITS},
        "train_text": root / "train_text.txt",
        "test_other_synth_text": root / "test_other_synth.txt",
    }
