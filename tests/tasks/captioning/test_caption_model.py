"""The captioning model: padding, gradients, decoding parity (beam 1 == greedy, batched == one by one)."""

from __future__ import annotations

import pytest
import torch

from multiattn.tasks.captioning.decoders import TransformerCaptionDecoder
from multiattn.tasks.captioning.encoders import ConvEncoder, TimmEncoder
from multiattn.tasks.captioning.model import CaptionModelConfig, DecoderConfig, EncoderConfig, build_model

VOCAB = 17
ENCODER = EncoderConfig(channels=(8, 16, 16), strides=(2, 2, 2))
TINY_DECODER = dict(
    embed_dim=16, hidden_dim=24, attn_dim=12, num_heads=2, num_layers=2, ff_dim=32, dropout=0.0
)
DECODERS = ["show_attend_tell", "transformer"]


def _model(decoder: str, seed: int = 0):
    torch.manual_seed(seed)
    config = CaptionModelConfig(encoder=ENCODER, decoder=DecoderConfig(name=decoder, **TINY_DECODER))
    model = build_model(config, vocab_size=VOCAB)
    return model.eval()


def _batch(seed: int = 0, batch: int = 3):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, 96, 96, generator=g)
    lengths = torch.tensor([7, 4, 5][:batch])
    tokens = torch.zeros(batch, 7, dtype=torch.long)
    for row, length in enumerate(lengths.tolist()):
        tokens[row, 0] = 1
        tokens[row, 1 : length - 1] = torch.randint(4, VOCAB, (length - 2,), generator=g)
        tokens[row, length - 1] = 2
    return images, tokens, lengths


@pytest.mark.parametrize("decoder", DECODERS)
def test_shapes_and_every_parameter_gets_a_gradient(decoder):
    model = _model(decoder).train()
    images, tokens, lengths = _batch()
    out = model(images, tokens, lengths, with_attention=True)
    assert out.logits.shape == (3, 6, VOCAB)
    assert out.attention.shape == (3, 6, 12, 12)
    assert torch.allclose(out.attention.sum((-1, -2)), torch.ones(3, 6), atol=1e-5)
    loss, parts = model.loss(out, tokens, lengths, attention_penalty=0.5, attention_entropy=0.1)
    assert torch.isfinite(loss) and "penalty" in parts and "entropy" in parts
    torch.testing.assert_close(loss, parts["nll"] + 0.5 * parts["penalty"] + 0.1 * parts["entropy"])
    loss.backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, missing


@pytest.mark.parametrize("decoder", DECODERS)
def test_padding_tokens_do_not_change_the_loss(decoder):
    model = _model(decoder)
    images, tokens, lengths = _batch()
    base, _ = model.loss(model(images, tokens, lengths), tokens, lengths)
    other = tokens.clone()
    pad = torch.arange(other.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, L)
    other[pad] = torch.randint(3, VOCAB, (int(pad.sum()),))
    # padding positions hold arbitrary ids now; the model must neither read nor score them
    other_loss, _ = model.loss(model(images, other, lengths), torch.where(pad, 0, other), lengths)
    assert torch.allclose(base, other_loss, atol=1e-5)
    # and padded targets are ignored: a longer pad tail changes nothing
    wider = torch.cat([tokens, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    wider_loss, _ = model.loss(model(images, wider, lengths), wider, lengths)
    assert torch.allclose(base, wider_loss, atol=1e-5)


@pytest.mark.parametrize("decoder", DECODERS)
def test_beam_one_equals_greedy(decoder):
    model = _model(decoder, seed=1)
    images, _, _ = _batch(1)
    greedy = model.generate(images, beam_size=1, max_len=9)
    from multiattn.decoding import beam_search

    features = model.encoder(images)
    beam = beam_search(
        model._step,
        model.decoder.init_state(features),
        batch_size=3,
        beam_size=1,
        bos_id=1,
        eos_id=2,
        max_len=9,
        length_penalty=0.0,
    )
    assert [c.tokens for c in greedy] == [h.tokens for h in beam]
    for c, h in zip(greedy, beam):
        assert torch.allclose(c.attention, h.attention[: len(h.tokens)].float(), atol=1e-5)


@pytest.mark.parametrize("decoder", DECODERS)
def test_batched_beam_search_equals_one_at_a_time(decoder):
    model = _model(decoder, seed=2)
    images, _, _ = _batch(2)
    together = model.generate(images, beam_size=3, max_len=9)
    for i in range(3):
        alone = model.generate(images[i : i + 1], beam_size=3, max_len=9)[0]
        assert alone.tokens == together[i].tokens
        assert abs(alone.score - together[i].score) < 1e-4
        assert alone.attention.shape == (len(alone.tokens), 12, 12)
        assert torch.allclose(alone.attention, together[i].attention, atol=1e-5)


def test_compiled_attention_keeps_batched_equal_to_one_at_a_time_and_close_to_eager():
    model = _model("show_attend_tell", seed=2)
    images, _, _ = _batch(2)
    eager = model.generate(images, beam_size=3, max_len=9)
    together = model.generate(images, beam_size=3, max_len=9, compile_attention=True)
    for i in range(3):
        alone = model.generate(images[i : i + 1], beam_size=3, max_len=9, compile_attention=True)[0]
        assert alone.tokens == together[i].tokens
        assert abs(alone.score - together[i].score) < 1e-4
        assert torch.allclose(alone.attention, together[i].attention, atol=1e-5)
        # Float rounding apart, the same search: the tiny model's captions do not change.
        assert together[i].tokens == eager[i].tokens
        assert abs(together[i].score - eager[i].score) < 1e-4
    assert not model.compiled_energy.broken, "torch.compile failed: the compiled path was not tested"


def test_transformer_step_attention_matches_full_decoding():
    model = _model("transformer", seed=3)
    images, tokens, lengths = _batch(3)
    features = model.encoder(images)
    full_logits, full_attention = model.decoder(features, tokens[:, :-1], lengths - 1, with_attention=True)
    state = model.decoder.init_state(features)
    for t in range(int(lengths.min()) - 1):  # steps every row still has (padding outputs are zeroed)
        log_probs, state, attention = model.decoder.step(tokens[:, : t + 1], state)
        assert torch.allclose(log_probs, torch.log_softmax(full_logits[:, t], -1), atol=1e-4)
        assert torch.allclose(attention, full_attention[:, t], atol=1e-5)
    assert isinstance(model.decoder, TransformerCaptionDecoder)


def test_timm_encoder_loads_local_weights_file(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    encoder = TimmEncoder(name="resnet10t", weights_file=str(path))
    state = encoder.backbone.state_dict()
    stem = next(k for k in state if k.endswith("weight"))
    assert torch.equal(state[stem], source.state_dict()[stem])
    assert encoder.out_channels == 512 and encoder.reduction == 32
    assert not any(p.requires_grad for p in encoder.parameters())  # frozen by default
    fresh = TimmEncoder(name="resnet10t")
    assert not torch.equal(fresh.backbone.state_dict()[stem], state[stem])
    config = CaptionModelConfig(
        encoder=EncoderConfig(name="timm", backbone="resnet10t", weights_file=str(path)),
        decoder=DecoderConfig(embed_dim=16, hidden_dim=16, attn_dim=8),
    )
    model = build_model(config, vocab_size=VOCAB)
    out = model(torch.randn(2, 3, 64, 64), torch.tensor([[1, 5, 2], [1, 2, 0]]), torch.tensor([3, 2]))
    assert out.attention.shape == (2, 2, 2, 2)


def test_grid_memory_reorders_like_a_tensor():
    from multiattn.tasks.captioning.decoders import GridMemory

    features = torch.randn(3, 5, 4)
    projected = torch.randn(3, 5, 2)
    memory = GridMemory(features, projected)
    expanded = memory.reorder(torch.arange(3).repeat_interleave(2))  # beam expansion, K = 2
    assert torch.equal(expanded.features, features)  # one grid per image, shared by its 2 rows
    assert torch.equal(expanded.rows[0], features.repeat_interleave(2, dim=0))
    within = expanded.reorder(torch.tensor([1, 1, 2, 3, 5, 4]))  # rows move inside their image
    assert within.features is expanded.features  # nothing copied
    assert torch.equal(within.features_proj, projected)
    uneven = within.reorder(torch.tensor([0, 1, 4]))  # image 0 twice, image 2 once: no equal groups
    assert torch.equal(uneven.features, features[[0, 0, 2]])
    dropped = within.reorder(torch.tensor([0, 4]))  # rows of images 0 and 2 only
    assert torch.equal(dropped.features, features[[0, 2]])
    assert torch.equal(dropped.features_proj, projected[[0, 2]])


def _learned_coordinates_model(seed: int = 0):
    torch.manual_seed(seed)
    config = CaptionModelConfig(
        encoder=EncoderConfig(channels=(8, 16, 16), strides=(2, 2, 2), coordinates=True),
        decoder=DecoderConfig(name="show_attend_tell", init="learned", **TINY_DECODER),
    )
    return build_model(config, vocab_size=VOCAB).eval()


def test_coordinates_are_the_cell_centres_after_the_grid():
    model = _learned_coordinates_model()
    images, _, _ = _batch()
    grid = model.encoder(images)  # (B, 16 + 2, 12, 12)
    assert grid.shape == (3, 18, 12, 12) and model.encoder.out_channels == 18
    assert torch.equal(grid[:, :16], model.encoder.encoder(images))
    centres = (torch.arange(12) + 0.5) / 6 - 1  # (12,)
    assert torch.allclose(grid[0, 16], centres.expand(12, 12))  # x varies along the width
    assert torch.allclose(grid[0, 17], centres[:, None].expand(12, 12))  # y along the height


def test_learned_start_state_is_the_same_for_every_image_and_trains():
    model = _learned_coordinates_model().train()
    images, tokens, lengths = _batch()
    state = model.decoder.init_state(model.encoder(images))
    assert torch.equal(state["h"][0], state["h"][1]) and torch.equal(state["c"][0], state["c"][2])
    assert not hasattr(model.decoder, "init_h")
    loss, _ = model.loss(model(images, tokens, lengths), tokens, lengths, attention_penalty=0.5)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_entropy_of_selected_words_only():
    model = _model("show_attend_tell").train()
    images, tokens, lengths = _batch()
    out = model(images, tokens, lengths, with_attention=True)
    word = int(tokens[0, 1])  # the first word of the first caption
    _, every = model.loss(out, tokens, lengths, attention_entropy=0.1)
    _, selected = model.loss(
        out, tokens, lengths, attention_entropy=0.1, entropy_token_ids=torch.tensor([word])
    )
    steps = tokens[:, 1:] == word  # the steps whose target is that word (never padding: pad id 0)
    per_step = -(
        out.attention.float().flatten(2) * out.attention.float().flatten(2).clamp_min(1e-12).log()
    ).sum(-1)
    torch.testing.assert_close(selected["entropy"], per_step[steps].mean())
    assert not torch.isclose(selected["entropy"], every["entropy"])


@pytest.mark.parametrize(
    ("kernels", "offset"),
    [(None, -3.5), ([4, 4, 4, 3, 3], 0.0), ([2, 2, 2, 3, 3], 0.0), ([4, 3, 4, 3, 3], -1.0)],
)
def test_conv_encoder_grid_offset_is_where_each_cell_looks(kernels, offset):
    # With every weight positive the gradient of one cell's output with respect to the image is
    # its receptive field's weighting; its centroid is where the cell is centred.
    encoder = ConvEncoder(kernel_sizes=kernels).eval()
    for module in encoder.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.constant_(module.weight, 1.0)
    assert encoder.grid_offset == offset
    centres = torch.arange(96.0) + 0.5  # pixel centres
    for row, column in [(5, 6), (4, 4), (7, 3)]:  # cells whose fields stay inside the image
        images = torch.ones(1, 3, 96, 96, requires_grad=True)
        encoder(images)[0, :, row, column].sum().backward()
        field = images.grad[0].sum(0)  # (96, 96)
        centre_y = (field.sum(1) * centres).sum() / field.sum()
        centre_x = (field.sum(0) * centres).sum() / field.sum()
        tile_y, tile_x = 8 * row + 4, 8 * column + 4  # the 8x8 tile the overlays draw it on
        torch.testing.assert_close(centre_y, torch.tensor(tile_y + offset), atol=1e-3, rtol=0)
        torch.testing.assert_close(centre_x, torch.tensor(tile_x + offset), atol=1e-3, rtol=0)


def test_conv_encoder_kernels_and_dilations_set_the_receptive_field_not_the_grid():
    images = torch.zeros(2, 3, 96, 96)
    images[:, :, 40:44, 40:44] = 1.0  # a 4-pixel dot: which cells does it reach?
    reached = {}
    for kernels, dilations, field in [
        (None, None, 47),
        ([3, 3, 3, 3, 1], None, 31),
        ([3, 3, 3, 1, 1], None, 15),
        (None, [1, 1, 1, 2, 2], 79),
    ]:
        torch.manual_seed(0)
        encoder = ConvEncoder(kernel_sizes=kernels, dilations=dilations).eval()
        assert encoder.receptive_field == field
        with torch.no_grad():
            change = (encoder(images) - encoder(torch.zeros_like(images))).abs().sum(dim=(0, 1))  # (12, 12)
        assert change.shape == (12, 12)
        reached[field] = int((change > 1e-6).sum())
    assert reached[15] < reached[31] < reached[47] < reached[79]  # a wider field: more cells see the dot
    with pytest.raises(ValueError, match="kernel_sizes: stage 3: a kernel of 2 at stride 1"):
        ConvEncoder(kernel_sizes=[3, 3, 3, 2, 1])
    with pytest.raises(ValueError, match="kernel_sizes"):
        ConvEncoder(kernel_sizes=[3, 3])
    with pytest.raises(ValueError, match="dilations"):
        ConvEncoder(dilations=[1, 1, 1, 0, 2])


def _attend_model(attend: str, seed: int = 0, query_word: bool = False):
    torch.manual_seed(seed)
    decoder = DecoderConfig(
        name="show_attend_tell", init="learned", attend=attend, query_word=query_word, **TINY_DECODER
    )
    config = CaptionModelConfig(
        encoder=EncoderConfig(channels=(8, 16, 16), strides=(2, 2, 2), coordinates=True), decoder=decoder
    )
    return build_model(config, vocab_size=VOCAB).eval()


@pytest.mark.parametrize(("attend", "query_word"), [("before", False), ("after", False), ("before", True)])
def test_attention_query_reads_the_previous_word_only_when_attending_after_or_asked(attend, query_word):
    """Before: the first map comes from the start state, whatever the first input token; after:
    the LSTM has read that token first, so the map changes with it; with query_word the token's
    embedding is part of the query."""
    model = _attend_model(attend, seed=1, query_word=query_word)
    images, tokens, lengths = _batch(seed=2)
    other = tokens.clone()
    other[:, 0] = 3  # another first input word
    with torch.no_grad():
        first = model(images, tokens, lengths, with_attention=True).attention[:, 0]
        changed = model(images, other, lengths, with_attention=True).attention[:, 0]
    assert torch.equal(first, changed) == (attend == "before" and not query_word)


@pytest.mark.parametrize(("attend", "query_word"), [("after", False), ("before", True)])
def test_attending_after_trains_every_parameter_and_teacher_forcing_matches_stepping(attend, query_word):
    model = _attend_model(attend, seed=4, query_word=query_word)
    images, tokens, lengths = _batch(seed=6)
    with torch.no_grad():
        out = model(images, tokens, lengths, with_attention=True)
        state = model.decoder.init_state(model.encoder(images))
        for t in range(tokens.shape[1] - 1):  # the inputs: tokens[:, :-1]
            log_probs, state, weights = model.decoder.step(tokens[:, : t + 1], state)
            assert torch.allclose(log_probs, torch.log_softmax(out.logits[:, t].float(), -1), atol=1e-5)
            assert torch.allclose(weights, out.attention[:, t], atol=1e-6)
    model.train()
    loss, _ = model.loss(model(images, tokens, lengths), tokens, lengths, attention_penalty=0.5)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


@pytest.mark.parametrize(("attend", "query_word"), [("before", False), ("after", False), ("before", True)])
def test_learned_start_and_each_query_keep_batched_search_equal_to_one_at_a_time(attend, query_word):
    """Grid coordinates, a learned start state and each attention query."""
    model = _attend_model(attend, seed=3, query_word=query_word)
    images, _, _ = _batch(seed=5)
    batched = model.generate(images, beam_size=3, max_len=8)
    for i, caption in enumerate(batched):
        single = model.generate(images[i : i + 1], beam_size=3, max_len=8)[0]
        assert single.tokens == caption.tokens
        assert abs(single.score - caption.score) < 1e-4


def test_attend_must_be_before_or_after():
    with pytest.raises(ValueError, match="attend: expected before or after"):
        _attend_model("during")
