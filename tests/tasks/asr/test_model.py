"""ASRModel: lengths, padding invariance, incremental == teacher-forced decoding, joint decoding."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from multiattn.subsampling import subsampled_length
from multiattn.tasks.asr.decode import decode_batch
from multiattn.tasks.asr.features import LogMelFeatures, feature_lengths
from multiattn.tasks.asr.model import ASRModel, ASRModelConfig, DecoderConfig, EncoderConfig, FeaturesConfig
from multiattn.tasks.asr.tokenizer import CharTokenizer

TOK = CharTokenizer()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _model(encoder: str = "conformer", decoder: str = "transformer", **kwargs) -> ASRModel:
    torch.manual_seed(0)
    config = ASRModelConfig(
        embed_dim=32,
        num_heads=2,
        dropout=0.0,
        features=FeaturesConfig(num_mels=40),
        encoder=EncoderConfig(
            name=encoder, num_layers=2, ff_dim=64, conv_kernel_size=5, subsampling_channels=8
        ),
        decoder=DecoderConfig(name=decoder, num_layers=2, ff_dim=64),
    )
    return ASRModel(replace(config, **kwargs), vocab_size=len(TOK)).eval()


def _audio(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    wave = torch.zeros(len(lengths), max(lengths))
    for row, n in enumerate(lengths):
        wave[row, :n] = torch.randn(n, generator=generator) * 0.1
    return wave, torch.tensor(lengths)


@pytest.mark.parametrize("num_samples", [400, 401, 559, 560, 1500, 16000, 23456])
def test_encoder_lengths_match_the_formula(num_samples: int) -> None:
    model = _model()
    wave, lengths = _audio([num_samples]) if num_samples >= 1520 else (None, None)
    frames = (num_samples - 400) // 160 + 1
    l1 = (frames - 3) // 2 + 1
    expected = max((l1 - 3) // 2 + 1, 0) if l1 > 0 else 0
    assert int(model.encoder_lengths(torch.tensor([num_samples]))[0]) == expected
    assert feature_lengths(num_samples) == frames
    assert subsampled_length(frames) == expected
    if wave is not None:
        enc = model.encode(wave, lengths)
        assert enc.memory.shape[1] == expected == int(enc.lengths[0])
        assert enc.features.shape[1] == frames


@pytest.mark.parametrize("encoder", ["conformer", "transformer", "bilstm"])
def test_encoder_outputs_are_padding_invariant(encoder: str) -> None:
    model = _model(encoder)
    wave, lengths = _audio([6000])
    alone = model.encode(wave, lengths)
    padded = torch.cat([wave, torch.randn(1, 3000)], dim=1)
    batch_wave = torch.cat([padded, torch.randn(1, 9000) * 0.1], dim=0)
    together = model.encode(batch_wave, torch.tensor([6000, 9000]))
    n = int(alone.lengths[0])
    assert int(together.lengths[0]) == n
    torch.testing.assert_close(together.memory[0, :n], alone.memory[0], atol=1e-4, rtol=1e-4)
    assert torch.all(together.memory[0, n:] == 0)


def test_spec_augment_only_in_training_and_global_norm_stats() -> None:
    feats = LogMelFeatures(num_mels=40, normalization="global")
    wave, lengths = _audio([8000, 5000])
    feats.train()
    torch.manual_seed(0)
    a, _ = feats(wave, lengths)
    assert bool(feats.global_initialised)
    assert (a == 0).float().mean() > (feats.eval()(wave, lengths)[0] == 0).float().mean()
    b, _ = feats.eval()(wave, lengths)
    c, _ = feats(wave, lengths)
    torch.testing.assert_close(b, c)


@pytest.mark.parametrize("decoder", ["transformer", "location"])
def test_incremental_steps_equal_teacher_forcing(decoder: str) -> None:
    model = _model(decoder=decoder)
    wave, lengths = _audio([7000, 5000])
    enc = model.encode(wave, lengths)
    tokens = torch.randint(3, len(TOK), (2, 6))
    tokens[:, 0] = model.bos_id
    full = model.decoder(tokens, enc.memory, enc.lengths).log_softmax(-1)  # (B, T, V)
    state = model.init_decoder_state(enc.memory, enc.lengths)
    step_fn = model.make_step_fn(return_attention=True)
    for t in range(tokens.shape[1]):
        out = step_fn(tokens[:, : t + 1], state)
        state = out.state
        assert torch.all(out.log_probs[:, model.blank_id] == float("-inf"))  # blank is never emitted
        keep = torch.arange(full.shape[-1]) != model.blank_id
        torch.testing.assert_close(out.log_probs[:, keep], full[:, t, keep], atol=1e-4, rtol=1e-4)
        assert out.attention.shape == (2, enc.memory.shape[1])
        assert torch.all(out.attention[1, int(enc.lengths[1]) :] == 0)


@pytest.mark.parametrize("encoder,decoder", [("conformer", "transformer"), ("bilstm", "location")])
def test_every_parameter_gets_a_gradient(encoder: str, decoder: str) -> None:
    model = _model(encoder, decoder).train()
    wave, lengths = _audio([7000, 5000])
    tokens = torch.randint(3, len(TOK), (2, 5))
    out = model(wave, lengths, tokens, torch.tensor([5, 3]))
    (
        out.ctc_log_probs.logsumexp(-1).sum() * 0 + out.ctc_log_probs[..., 3].sum() + out.decoder_logits.sum()
    ).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_joint_decoding_with_zero_ctc_weight_equals_attention_beam_search() -> None:
    model = _model()
    wave, lengths = _audio([9000, 6000, 7500])
    attention = decode_batch(model, TOK, wave, lengths, mode="attention", beam_size=4)
    joint0 = decode_batch(model, TOK, wave, lengths, mode="joint", beam_size=4, ctc_weight=0.0)
    assert [r.tokens for r in attention] == [r.tokens for r in joint0]
    assert [r.score for r in attention] == pytest.approx([r.score for r in joint0])


def test_joint_decoding_batched_equals_one_at_a_time_and_respects_length_limit() -> None:
    model = _model()
    wave, lengths = _audio([9000, 6000])
    batched = decode_batch(model, TOK, wave, lengths, mode="joint", beam_size=3, ctc_weight=0.5)
    for row in range(2):
        n = int(lengths[row])
        alone = decode_batch(
            model,
            TOK,
            wave[row : row + 1, :n],
            lengths[row : row + 1],
            mode="joint",
            beam_size=3,
            ctc_weight=0.5,
        )
        assert alone[0].tokens == batched[row].tokens
        assert len(batched[row].tokens) <= batched[row].ctc_log_probs.shape[0]


def test_ctc_mode_returns_collapsed_greedy_path() -> None:
    model = _model()
    wave, lengths = _audio([9000])
    result = decode_batch(model, TOK, wave, lengths, mode="ctc")[0]
    best = result.ctc_log_probs.argmax(-1).tolist()
    collapsed = [t for i, t in enumerate(best) if t != 0 and (i == 0 or best[i - 1] != t)]
    assert result.tokens == collapsed
    with pytest.raises(ValueError, match="mode"):
        decode_batch(model, TOK, wave, lengths, mode="nope")


def test_beam_shared_cache_equals_reordering_everything() -> None:
    model = _model()
    wave, lengths = _audio([9000, 6000])
    enc = model.encode(wave, lengths)
    shared = model.init_decoder_state(enc.memory, enc.lengths)
    plain = model.decoder.decoder.init_cache(enc.memory, shared.memory_mask)
    plain.memory = None  # the reference reorders every tensor at every step
    expand = torch.tensor([0, 0, 0, 1, 1, 1])  # B = 2 items -> K = 3 beams each: memory rows change
    within = [torch.tensor([2, 0, 0, 5, 3, 4]), torch.tensor([1, 1, 2, 3, 3, 3])]
    swap = torch.tensor([3, 4, 5, 0, 1, 2])  # rows change item: the memory must follow
    uneven = torch.tensor([0, 1, 3, 4, 5])  # a dropped row: groups of 3 and 2 rows, one copy per row
    drop = torch.tensor([2, 3, 4])  # item 1's rows are dropped (beam search stops an item)
    tokens = torch.randint(3, len(TOK), (6, 7))
    tokens[:, 0] = model.bos_id
    shared.reorder(expand)
    plain.reorder(expand)
    for step, indices in enumerate([*within, swap, uneven, drop]):
        a, _, _ = model.decoder.step(tokens[:, : step + 1], shared)
        x = model.decoder.embed(tokens[:, step : step + 1], offset=plain.length)
        b = model.decoder.out(model.decoder.decoder(x, cache=plain)[:, 0]).float().log_softmax(-1)
        torch.testing.assert_close(a, b)
        shared.reorder(indices)
        plain.reorder(indices)
        tokens = tokens.index_select(0, indices)
    a, _, _ = model.decoder.step(tokens[:, :6], shared)
    x = model.decoder.embed(tokens[:, 5:6], offset=plain.length)
    b = model.decoder.out(model.decoder.decoder(x, cache=plain)[:, 0]).float().log_softmax(-1)
    torch.testing.assert_close(a, b)
    for mine, theirs in zip(shared.cross_attn, plain.cross_attn):
        assert mine.key.shape[0] == 1  # the 3 remaining rows share one copy of their item's memory
        torch.testing.assert_close(mine.key, theirs.key[:1])
        torch.testing.assert_close(mine.value, theirs.value[:1])


def test_speed_perturbation_changes_length_in_training_only() -> None:
    from multiattn.tasks.asr.features import LogMelFeatures

    torch.manual_seed(0)
    features = LogMelFeatures(num_mels=20, spec_augment=False, speed_perturb=(0.9, 1.1))
    wave, lengths = torch.randn(2, 16000), torch.tensor([16000, 8000])
    plain = LogMelFeatures(num_mels=20, spec_augment=False)
    _, plain_frames = plain(wave, lengths)
    seen = set()
    for _ in range(12):
        _, frames = features.train()(wave, lengths)
        ratio = float(frames[0]) / float(plain_frames[0])
        assert ratio == pytest.approx(1 / 0.9, abs=0.02) or ratio == pytest.approx(1 / 1.1, abs=0.02)
        seen.add(round(ratio, 1))
        assert int(frames[1]) < int(frames[0])  # per-utterance lengths follow the same factor
    assert len(seen) == 2  # both factors are drawn
    eval_feats, eval_frames = features.eval()(wave, lengths)
    torch.testing.assert_close(eval_frames, plain_frames)
    with pytest.raises(ValueError, match="speed_perturb"):
        LogMelFeatures(speed_perturb=(3.0,))
