"""ASRSystem / ASRDataModule: the tiny config overfits one batch, configs instantiate,
checkpoints rebuild themselves, validation logs overlays and WER."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from multiattn.checkpoint import load_system
from multiattn.io import UserError
from multiattn.tasks.asr.data import ASRDataModule, BucketBatchSampler, collate_speech
from multiattn.tasks.asr.system import ASRSystem
from tests.helpers.configs import override

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
CONFIGS = sorted(Path(__file__).resolve().parents[3].joinpath("configs").glob("asr*.yaml"))
# The tiny config's model, so "the tiny config overfits one batch" tests that very config.
TINY = yaml.safe_load((CONFIGS[0].parent / "asr_tiny.yaml").read_text())["model"]["init_args"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> ASRDataModule:
    root = tmp_path_factory.mktemp("asr_data")
    data = ASRDataModule(source="embedded", data_dir=str(root), corpus_size="tiny", batch_size=4)
    data.prepare_data()
    data.setup("fit")
    return data


def test_tiny_model_overfits_one_batch(tiny_data: ASRDataModule, one_thread) -> None:
    torch.manual_seed(0)
    system = ASRSystem(**TINY)
    batch = next(iter(tiny_data.train_dataloader()))
    optimizer = torch.optim.Adam(system.parameters(), lr=TINY["optim"]["learning_rate"])
    system.train()
    first = None
    for _ in range(120):
        loss = system.compute_loss(batch)
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
        first = first if first is not None else float(loss["loss"].detach())
    final = system.compute_loss(batch)
    assert float(final["loss"]) < 0.3 * first
    assert float(final["token_accuracy"]) > 0.8


def test_bucket_sampler_is_deterministic_and_covers_everything() -> None:
    durations = [float(d) for d in torch.rand(103, generator=torch.Generator().manual_seed(0))]
    sampler = BucketBatchSampler(durations, batch_size=8, shuffle=True, seed=3, pool_batches=4)
    first = sampler.batches()
    assert sorted(i for b in first for i in b) == list(range(103))
    assert (
        first == BucketBatchSampler(durations, batch_size=8, shuffle=True, seed=3, pool_batches=4).batches()
    )
    sampler.set_epoch(1)
    assert sampler.batches() != first
    ordered = BucketBatchSampler(durations, batch_size=8, shuffle=False).batches()
    flat = [durations[i] for b in ordered for i in b]
    assert flat == sorted(flat)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("replicas", [2, 3, 16])
def test_bucket_sampler_shards_cover_everything_in_equal_steps(shuffle: bool, replicas: int) -> None:
    durations = [float(d) for d in torch.rand(103, generator=torch.Generator().manual_seed(0))]
    common = dict(batch_size=8, shuffle=shuffle, seed=3, pool_batches=4)
    whole = BucketBatchSampler(durations, **common).batches()  # 13 batches
    shards = [
        BucketBatchSampler(durations, **common, num_replicas=replicas, rank=rank) for rank in range(replicas)
    ]
    assert len({len(shard) for shard in shards}) == 1  # every process runs as many steps
    assert all(len(shard.batches()) == len(shard) for shard in shards)
    drawn = [batch for shard in shards for batch in shard.batches()]
    assert sorted(map(tuple, whole)) == sorted(set(map(tuple, drawn)))  # each batch somewhere
    assert len(drawn) - len(whole) == (-len(whole)) % replicas  # plus only the padding repeats
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(durations, **common, num_replicas=2, rank=2).batches()


def test_batches_carry_padding_lengths_and_word_timings(tiny_data: ASRDataModule) -> None:
    batch = next(iter(tiny_data.val_dataloader()))
    assert batch.waveform.shape[0] == len(batch.texts) == batch.lengths.shape[0]
    assert int(batch.lengths.max()) == batch.waveform.shape[1]
    assert batch.words is not None and batch.words[0][0]["word"] == batch.texts[0].split()[0]
    row = int(batch.lengths.argmin())
    assert torch.all(batch.waveform[row, int(batch.lengths[row]) :] == 0)
    items = [tiny_data.datasets["val"][0]]
    assert collate_speech(items).texts == [items[0].text]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses_and_instantiates(config: Path) -> None:
    from multiattn.lightning_cli import build_cli

    cli = build_cli(["-c", str(config), "--trainer.logger", "false"], run=False)
    assert isinstance(cli.model, ASRSystem)
    assert isinstance(cli.datamodule, ASRDataModule)


def test_checkpoint_rebuilds_with_vocab_and_validation_logs_overlays(
    tiny_data: ASRDataModule, tmp_path: Path, one_thread
) -> None:
    import lightning.pytorch as pl

    torch.manual_seed(0)
    system = ASRSystem(**TINY)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=pl.loggers.CSVLogger(tmp_path, name="logs"),
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
    )
    trainer.fit(system, datamodule=tiny_data)
    assert "val/wer" in trainer.callback_metrics
    assert list(tmp_path.rglob("overlays/epoch_000/*.png"))
    path = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["tokenizer"]["vocab"] == system.tokenizer.vocab
    loaded = load_system(ASRSystem, path, decoding={**TINY["decoding"], "ctc_weight": 0.5})
    assert loaded.decoding.ctc_weight == 0.5 and not loaded.training
    batch = next(iter(tiny_data.val_dataloader()))
    system.eval()
    with torch.no_grad():
        a = system.decode(batch.waveform, batch.lengths, mode="ctc")
        b = loaded.decode(batch.waveform, batch.lengths, mode="ctc")
    assert [r.tokens for r in a] == [r.tokens for r in b]
    predictions = loaded.predict_step(batch, 0)
    assert [p["file"] for p in predictions] == batch.paths
    assert all(isinstance(p["text"], str) for p in predictions)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="val_decoding"):
        ASRSystem(**override(TINY, decoding__val_decoding="nope"))
    with pytest.raises(ValueError, match="source"):
        ASRDataModule(source="nope")


def test_language_model_trains_beside_without_touching_the_recogniser(
    tiny_data: ASRDataModule, one_thread
) -> None:
    """The LM adds its loss, leaves the recogniser's gradients (and their clipping) as they were,
    and joins attention / joint decoding at decoding.lm_weight > 0."""
    batch = next(iter(tiny_data.train_dataloader()))
    without = override(TINY, language_model__hidden_dim=0, decoding__lm_weight=0.0)
    grads = []
    for args in (without, TINY):
        torch.manual_seed(0)
        system = ASRSystem(**args)
        system.train()
        losses = system.compute_loss(batch)
        assert ("lm" in losses) == (args["language_model"]["hidden_dim"] > 0)
        losses["loss"].backward()
        system.configure_gradient_clipping(None, gradient_clip_val=1e-3, gradient_clip_algorithm="norm")
        grads.append({n: p.grad.clone() for n, p in system.model.named_parameters() if p.grad is not None})
        if system.language_model is not None:
            lm_norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in system.language_model.parameters()])
            )
            assert float(lm_norm) == pytest.approx(1e-3, rel=1e-3)  # clipped on its own
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)

    system.eval()
    with torch.no_grad():
        plain = system.decode(batch.waveform, batch.lengths, mode="joint", lm_weight=0.0)
        fused = system.decode(batch.waveform, batch.lengths, mode="joint", lm_weight=5.0)
        default = system.decode(batch.waveform, batch.lengths, mode="joint")
    assert len(fused) == len(plain) and all(isinstance(r.text, str) for r in fused)
    assert [r.score for r in plain] != [r.score for r in fused]  # the LM's scores entered the search
    assert [r.score for r in default] != [r.score for r in plain]  # decoding.lm_weight is the default
    bare = ASRSystem(**without).eval()
    with pytest.raises(UserError, match="no language model"):
        bare.decode(batch.waveform, batch.lengths, mode="joint", lm_weight=0.5)


def test_language_model_reads_the_wider_text_in_training_steps_only(
    tiny_data: ASRDataModule, one_thread
) -> None:
    """language_model.text_batch_size adds sentences of train_text() to the LM's batch: drawn per
    step (the same step draws the same sentences), never in evaluation, never for the recogniser."""
    batch = next(iter(tiny_data.train_dataloader()))
    args = override(TINY, language_model__text_batch_size=3)
    system = ASRSystem(**args)
    system._lm_text = [f"sentence number {i}" for i in range(50)]  # what setup("fit") reads
    system.train()
    first = system._extra_lm_texts()
    assert len(first) == 3 and set(first) <= set(system._lm_text)
    assert system._extra_lm_texts() == first  # a function of the step
    torch.manual_seed(0)
    with_text = system.compute_loss(batch)
    system._lm_text = []
    torch.manual_seed(0)
    alone = system.compute_loss(batch)
    assert float(with_text["lm"]) != float(alone["lm"])
    for key in ("ctc", "attention"):
        assert float(with_text[key]) == float(alone[key])
    system.eval()
    system._lm_text = ["x y z"]
    assert system._extra_lm_texts() == []
    assert tiny_data.train_text() == tiny_data.train_texts()  # the grammar corpus: its transcripts
    with pytest.raises(ValueError, match="text_batch_size"):
        ASRSystem(**override(TINY, language_model__text_batch_size=-1))


def test_grammar_text_sentences_widen_the_language_models_text(tiny_data: ASRDataModule, monkeypatch) -> None:
    """grammar_text_sentences adds text-only grammar sentences to train_text(), never a validation
    or test transcript, the same ones each time."""
    from multiattn.tasks.asr import data as data_module
    from multiattn.tasks.asr.sources.manifest import read_manifest

    wider = ASRDataModule(
        source="embedded", data_dir=tiny_data.hparams.data_dir, corpus_size="tiny", grammar_text_sentences=200
    )
    text = wider.train_text()
    assert text[: len(tiny_data.train_texts())] == tiny_data.train_texts()
    assert 190 <= len(text) - len(tiny_data.train_texts()) <= 200
    assert wider.train_text() == text
    paths = wider._corpus()
    held_out = {
        e.text for split in ("validation", "test", "test_unseen_voices") for e in read_manifest(paths[split])
    }
    assert held_out and not held_out & set(text)
    # a drawn sentence that is a held-out transcript is dropped
    spoken = sorted(held_out)[0]
    monkeypatch.setattr(data_module, "generate_sentences", lambda count, seed: [spoken, "a new sentence"])
    assert wider.train_text()[len(tiny_data.train_texts()) :] == ["a new sentence"]
    with pytest.raises(ValueError, match="grammar_text_sentences"):
        ASRDataModule(corpus_text="open", grammar_text_sentences=10)
