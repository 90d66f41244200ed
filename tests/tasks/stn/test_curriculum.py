"""The digit curriculum: :class:`MixtureSampler` (shares per epoch, determinism, even coverage,
resuming) and the data module that stacks the standard digits before the varied ones."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest

from multiattn.resumable import MixtureSampler
from multiattn.tasks.stn.data import STNDataModule
from multiattn.tasks.stn.sources import embedded, fonts
from tests.helpers.resume import check_sigkill_resume


def _curriculum(epoch: int) -> tuple[float, float]:
    return (1.0, 0.0) if epoch < 2 else (0.25, 0.75)


@pytest.fixture
def sampler() -> MixtureSampler:
    return MixtureSampler([30, 50], _curriculum, num_samples=40, seed=7)


def test_shares_per_epoch(sampler):
    for epoch, expected in ((0, (40, 0)), (1, (40, 0)), (2, (10, 30)), (5, (10, 30))):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 40
        parts = Counter(0 if index < 30 else 1 for index in order)
        assert (parts[0], parts[1]) == expected
        assert all(0 <= index < 80 for index in order)


def test_order_depends_only_on_seed_and_epoch(sampler):
    again = MixtureSampler([30, 50], _curriculum, num_samples=40, seed=7)
    other_seed = MixtureSampler([30, 50], _curriculum, num_samples=40, seed=8)
    for epoch in range(4):
        assert sampler.order(epoch) == again.order(epoch)
        assert sampler.order(epoch) != other_seed.order(epoch)
    assert sampler.order(0) != sampler.order(1)


def test_each_part_is_seen_evenly(sampler):
    # Part 0 gives 40 + 40 indices in epochs 0-1: all 30 once before any repeats (an endless
    # stream of permutations), so after 80 draws every index was drawn 2 or 3 times.
    seen = Counter(sampler.order(0) + sampler.order(1))
    assert set(seen) == set(range(30)) and set(seen.values()) <= {2, 3}
    assert set(sampler.order(0)) == set(range(30))  # the first epoch's 40 draws hold all 30
    # Part 1: 30 per epoch from epoch 2 on; every one of its 50 indices within two epochs.
    late = [index for index in sampler.order(2) + sampler.order(3) if index >= 30]
    assert len(set(late)) == 50


def test_skip_next_resumes_the_epoch(sampler):
    sampler.set_epoch(3)
    whole = list(sampler)
    sampler.skip_next(12)
    assert list(sampler) == whole[12:]
    assert list(sampler) == whole  # only the next iteration is shortened


def test_bad_shares_and_sizes_rejected():
    with pytest.raises(ValueError, match="summing to 1"):
        MixtureSampler([5, 5], lambda epoch: (0.6, 0.6), num_samples=4).order(0)
    with pytest.raises(ValueError, match="summing to 1"):
        MixtureSampler([5, 5], lambda epoch: (1.0,), num_samples=4).order(0)
    with pytest.raises(ValueError, match="part_sizes"):
        MixtureSampler([5, 0], _curriculum, num_samples=4)


def test_data_module_arguments_checked():
    # The standard digits are the curriculum's start: with them alone it is off, so a config with
    # a curriculum trains on them (or on another source) unchanged.
    assert STNDataModule(variety="standard", curriculum_epochs=2).curriculum is None
    assert STNDataModule(variety="varied", curriculum_epochs=2).curriculum == (2, 0.5)
    with pytest.raises(ValueError, match="curriculum_share"):
        STNDataModule(variety="varied", curriculum_epochs=2, curriculum_share=1.5)


@pytest.fixture
def bundled_fonts_only(monkeypatch):
    """The varied digits from matplotlib's fonts only: fast, and the same on every machine."""
    monkeypatch.setattr(embedded, "discover_fonts", functools.partial(fonts.discover_fonts, system=False))


def test_data_module_stacks_standard_before_varied(tmp_path, bundled_fonts_only):
    args = dict(
        data_dir=str(tmp_path), train_size=48, val_size=16, test_size=16, batch_size=8, progress=False
    )
    data = STNDataModule(variety="varied", curriculum_epochs=1, curriculum_share=0.5, **args)
    data.prepare_data()
    data.setup("fit")
    standard = STNDataModule(variety="standard", **args)
    standard.setup("fit")
    varied = STNDataModule(variety="varied", **args)
    varied.setup("fit")
    train = data.datasets["train"]
    assert len(train) == 96
    assert np.array_equal(train.images[:48], standard.datasets["train"].images)
    assert np.array_equal(train.images[48:], varied.datasets["train"].images)
    assert np.array_equal(data.datasets["val"].images, varied.datasets["val"].images)  # validation: varied

    loader = data.train_dataloader()
    assert len(loader) == 6  # train_size images an epoch, whatever the mixture
    for epoch, standard_count in ((0, 48), (1, 24), (4, 24)):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        images = np.concatenate([batch.images.numpy() for batch in batches])
        from_standard = [
            any(
                np.array_equal(np.round(image[0] * 255), source)
                for source in standard.datasets["train"].images
            )
            for image in images
        ]
        assert len(images) == 48 and sum(from_standard) == standard_count


def test_curriculum_run_killed_mid_epoch_resumes_exactly(tmp_path):
    # configs/stn_tiny.yaml: 256 images / batch 32 = 8 steps per epoch; epoch 0 standard digits,
    # then the mixture; step 11 is in the middle of the first mixed epoch.
    check_sigkill_resume(
        "stn",
        tmp_path,
        "--data.init_args.variety=varied",
        "--data.init_args.curriculum_epochs=1",
        kill_step=11,
        steps=16,
        monitor="val/acc",
    )
