"""The training reference drawn per image is a function of (seed, epoch, index), and the training
loader yields the same batches in every process, worker count and resumed epoch (exact resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from multiattn.tasks.captioning.data import (
    CaptionData,
    EpochIndexSampler,
    EpochReferenceDataset,
    SceneCaptionData,
    reference_choice,
)

NUM_TRAIN = 24
BATCH = 4


def _scenes(data_dir, *, num_workers: int = 0, seed: int = 0) -> SceneCaptionData:
    data = SceneCaptionData(
        data_dir=str(data_dir),
        seed=seed,
        num_train=NUM_TRAIN,
        num_val=4,
        num_test=4,
        batch_size=BATCH,
        num_workers=num_workers,
    )
    data.setup("fit")
    return data


def _epoch_batches(loader, epoch: int, skip_batches: int = 0) -> list[tuple[list, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)  # what Lightning does at the start of every epoch
    loader.sampler.skip_next(skip_batches * loader.batch_size)  # what ExactResume does on resume
    return [(batch.image_ids, batch.tokens) for batch in loader]


def _assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for (ids_a, tokens_a), (ids_b, tokens_b) in zip(a, b, strict=True):
        assert ids_a == ids_b
        assert torch.equal(tokens_a, tokens_b)


def test_reference_choice_is_a_pure_function_in_range():
    draws = [[reference_choice(0, epoch, index, 4) for index in range(64)] for epoch in range(3)]
    assert draws == [[reference_choice(0, epoch, index, 4) for index in range(64)] for epoch in range(3)]
    assert all(0 <= d < 4 for row in draws for d in row)
    assert set(draws[0]) == {0, 1, 2, 3}  # every reference gets used, not only the first
    assert draws[0] != draws[1] != draws[2]  # a new draw every epoch
    assert draws[0] != [reference_choice(1, 0, index, 4) for index in range(64)]  # and per seed
    assert reference_choice(0, 5, 7, 1) == 0
    with pytest.raises(ValueError, match="count"):
        reference_choice(0, 0, 0, 0)


def test_same_reference_across_instances_differs_across_epochs(tmp_path):
    first = _scenes(tmp_path / "data").train_dataloader().dataset
    second = _scenes(tmp_path / "data").train_dataloader().dataset  # a separate setup, same seed
    assert isinstance(first, EpochReferenceDataset) and first is not second
    tokens = {}
    for epoch in range(3):
        for index in range(NUM_TRAIN):
            a, b = first[(epoch, index)], second[(epoch, index)]
            assert a.tokens == b.tokens, (epoch, index)
            # the training caption is one of the image's references
            assert a.tokens in [first.dataset.vocab.encode(r, max_len=30) for r in a.references]
            tokens[epoch, index] = a.tokens
    assert any(tokens[0, i] != tokens[1, i] for i in range(NUM_TRAIN))
    assert any(tokens[1, i] != tokens[2, i] for i in range(NUM_TRAIN))


def test_workers_and_resumed_epoch_see_the_same_batches(tmp_path):
    in_process = _scenes(tmp_path / "data").train_dataloader()
    assert isinstance(in_process.sampler, EpochIndexSampler)
    # Persistent workers keep the dataset copies they got at the first epoch: the epoch must
    # reach them through the sampled indices.
    workers = _scenes(tmp_path / "data", num_workers=2).train_dataloader()
    assert workers.num_workers == 2 and workers.persistent_workers
    for epoch in range(2):
        _assert_same_batches(_epoch_batches(in_process, epoch), _epoch_batches(workers, epoch))

    full = _epoch_batches(in_process, 1)
    assert [ids for ids, _ in full] != [ids for ids, _ in _epoch_batches(in_process, 0)]  # reshuffled
    resumed = _scenes(tmp_path / "data").train_dataloader()  # a new process resuming at batch 2
    _assert_same_batches(_epoch_batches(resumed, 1, skip_batches=2), full[2:])
    _assert_same_batches(_epoch_batches(resumed, 1), full)  # the skip is for one epoch only


def test_validation_and_test_loaders_are_unchanged(tmp_path):
    data = _scenes(tmp_path / "data")
    loader = data.val_dataloader()
    assert not isinstance(loader.dataset, EpochReferenceDataset)
    batch = next(iter(loader))
    assert batch.image_ids == [0, 1, 2, 3]  # in order
    first = data.vocab.encode(batch.references[0][0], max_len=30)  # always the first reference
    assert batch.tokens[0, : len(first)].tolist() == first


def _flickr8k(root) -> CaptionData:
    """Six training images with four references each, one val and one test image."""
    folder = root / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = {
        split: [f"{split}{k}.jpg" for k in range(6 if split == "train" else 1)]
        for split in ("train", "dev", "test")
    }
    lines = []
    for group in names.values():
        for name in group:
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / name)
            lines += [
                f"{name}#{k}\ta {word} on image {name[:-4]}"
                for k, word in enumerate(["dog", "cat", "cow", "hen"])
            ]
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split, group in names.items():
        (root / f"Flickr_8k.{split}Images.txt").write_text("\n".join(group) + "\n", encoding="utf-8")
    data = CaptionData(
        format="flickr8k",
        image_dir=str(folder),
        token_file=str(root / "Flickr8k.token.txt"),
        train_list=str(root / "Flickr_8k.trainImages.txt"),
        val_list=str(root / "Flickr_8k.devImages.txt"),
        test_list=str(root / "Flickr_8k.testImages.txt"),
        image_size=32,
        batch_size=3,
        num_workers=0,
        min_count=1,
        seed=3,
    )
    data.setup("fit")
    return data


def test_real_format_draws_by_epoch_through_the_same_dataset_class(tmp_path):
    data = _flickr8k(tmp_path)
    again = CaptionData(**{**data.hparams})  # a second instance over the same files
    again.setup("fit")
    epochs = [_epoch_batches(data.train_dataloader(), epoch) for epoch in range(3)]
    for epoch, batches in enumerate(epochs):
        _assert_same_batches(batches, _epoch_batches(again.train_dataloader(), epoch))
    # the drawn reference of an image changes across epochs (the word after "a" is the choice)
    words = [
        {
            image_id: data.vocab.decode_words(row)[1]
            for ids, tokens in batches
            for image_id, row in zip(ids, tokens)
        }
        for batches in epochs
    ]
    assert words[0] != words[1] and words[1] != words[2]
    assert {w for per_epoch in words for w in per_epoch.values()} > {"dog"}
