"""The captioning system end to end: tiny config overfits, configs instantiate, checkpoint -> app."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from multiattn.attention.compiled_energy import CompiledEnergy, fused_energy
from multiattn.checkpoint import load_checkpoint, load_system
from multiattn.io import UserError
from multiattn.lightning_cli import build_cli
from multiattn.tasks.captioning.app import main as caption_main
from multiattn.tasks.captioning.data import SceneCaptionData
from multiattn.tasks.captioning.model import CaptionModelConfig, DecoderConfig, EncoderConfig
from multiattn.tasks.captioning.sources.scenes import SHAPES, SIZES
from multiattn.tasks.captioning.system import CaptionDecodingConfig, CaptioningSystem
from tests.helpers.processes import metrics_by_process_count

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted((ROOT / "configs").glob("captioning*.yaml"))
TINY = ROOT / "configs" / "captioning_tiny.yaml"


def _tiny_init_args(section: str) -> dict:
    return dict(yaml.safe_load(TINY.read_text())[section]["init_args"])


def _tiny_batch(tmp_path: Path) -> tuple:
    """One training batch of the tiny config's scenes, and the system's arguments for their vocabulary."""
    torch.manual_seed(0)
    data = SceneCaptionData(**{**_tiny_init_args("data"), "data_dir": str(tmp_path / "data")})
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    return batch, {**_tiny_init_args("model"), "vocab": data.vocab.to_list(), "input_size": 96}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_captioning_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["-c", str(config)], run=False)
    assert isinstance(cli.model, CaptioningSystem)
    assert cli.datamodule is not None and cli.trainer is not None
    assert config.read_text().startswith(f"# multiattn fit -c configs/{config.name}")


def test_tiny_config_overfits_one_batch(tmp_path):
    batch, args = _tiny_batch(tmp_path)
    system = CaptioningSystem(**args)
    optimizer = torch.optim.Adam(system.parameters(), lr=3e-3)
    system.train()
    losses = []
    for _ in range(150):
        loss, _ = system._loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    system.eval()
    captions = system.generate(batch.images, beam_size=2)
    exact = sum(
        " ".join(system.vocab.decode_words(c.tokens)) in refs for c, refs in zip(captions, batch.references)
    )
    assert exact >= len(captions) // 2  # free-running decoding reproduces memorised captions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("captioning_tiny")
    args = [
        "fit",
        "-c",
        str(TINY),
        f"--data.data_dir={root / 'data'}",
        f"--trainer.default_root_dir={root / 'out'}",
        f"--trainer.logger.init_args.save_dir={root / 'out'}",
        f"--trainer.callbacks.init_args.dirpath={root / 'ckpt'}",
        "--trainer.max_epochs=1",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the other callbacks' relative outputs/ paths land here
        build_cli(args)
    return root


def test_checkpoint_is_safe_and_self_describing(trained):
    ckpt = trained / "ckpt" / "last.ckpt"
    raw = load_checkpoint(ckpt)  # weights_only=True
    hparams = raw["hyper_parameters"]
    assert hparams["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and hparams["input_size"] == 96
    system = load_system(CaptioningSystem, ckpt)
    assert not system.training and len(system.vocab) == len(hparams["vocab"])
    overlays = list((trained / "out").rglob("val_overlay_*.png"))
    assert overlays, "validation overlays were not logged"


VALIDATE = """
import sys, warnings
import yaml
from multiattn.checkpoint import load_system
from multiattn.tasks.captioning.data import SceneCaptionData
from multiattn.tasks.captioning.system import CaptioningSystem
from tests.helpers.processes import validate_metrics

warnings.filterwarnings("ignore")
ckpt, data_dir, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = yaml.safe_load(open("configs/captioning_tiny.yaml"))["data"]["init_args"]
# 15 images in batches of 4 over 2 processes: the sampler pads one shard with a repeated image.
data = SceneCaptionData(**{**args, "data_dir": data_dir, "num_val": 15, "batch_size": 4})
validate_metrics(load_system(CaptioningSystem, ckpt, log_overlays=False), data, devices)
"""


def test_validation_metrics_over_two_processes_equal_one_process(trained, tmp_path):
    # Corpus metrics (BLEU, CIDEr-D) and the scene scores are not means of per-process values:
    # every process must score all images, each once (tasks/common/distributed.py).
    results = metrics_by_process_count(VALIDATE, str(trained / "ckpt" / "last.ckpt"), str(tmp_path / "d"))
    assert {"val/bleu_4", "val/cider_d", "val/pairs_correct", "val/pointing_game"} <= set(results[1])
    # (val/loss stays a per-process mean, averaged: the padding repeat weighs in there.)
    for name, value in results[1].items():
        if name != "val/loss":
            assert results[2][name] == pytest.approx(value, abs=1e-6), name


def _scene_pngs(folder: Path, count: int = 2) -> list[Path]:
    from multiattn.tasks.captioning.sources.scenes import generate_split

    images, _ = generate_split(count, seed=11)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image in enumerate(images):
        path = folder / f"scene_{k}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def test_caption_app_prints_json_and_writes_overlays(trained, tmp_path, capsys, monkeypatch):
    paths = _scene_pngs(tmp_path / "imgs")
    code = caption_main(
        [
            *map(str, paths),
            "--ckpt",
            str(trained / "ckpt" / "last.ckpt"),
            "--json",
            "--beam-size",
            "2",
            "--overlay-dir",
            str(tmp_path / "overlays"),
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in records] == [str(p) for p in paths]
    for record in records:
        assert {"file", "caption", "words", "score", "attention_peaks", "overlay"} <= set(record)
        assert record["caption"] == " ".join(record["words"])
        assert len(record["attention_peaks"]) == len(record["words"])
        assert all(0 <= x < 96 and 0 <= y < 96 for x, y in record["attention_peaks"])
        assert Path(record["overlay"]).stat().st_size > 0
    text_code = caption_main([str(paths[0]), "--ckpt", str(trained / "ckpt" / "last.ckpt")])
    assert text_code == 0 and capsys.readouterr().out.startswith(f"{paths[0]}\t")
    # --compile-attention reaches the fused score kernel (a spy stands in for torch.compile's) and
    # captions the same.
    calls = []
    monkeypatch.setattr(
        CompiledEnergy, "_compile", lambda self: lambda *args: calls.append(1) or fused_energy(*args)
    )
    argv = [*map(str, paths), "--ckpt", str(trained / "ckpt" / "last.ckpt"), "--json", "--beam-size", "2"]
    assert caption_main([*argv, "--compile-attention"]) == 0
    compiled = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert calls and [r["words"] for r in compiled] == [r["words"] for r in records]


def test_caption_app_names_a_bad_file_in_one_line(trained, tmp_path, capsys):
    good = _scene_pngs(tmp_path / "imgs", 1)[0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    capsys.readouterr()  # drop the generator's progress bar
    code = caption_main([str(bad), str(good), "--ckpt", str(trained / "ckpt" / "last.ckpt"), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert len(captured.out.splitlines()) == 1  # the good file is still captioned
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and str(bad) in errors[0] and "not a readable image" in errors[0]
    missing = caption_main([str(good), "--ckpt", str(tmp_path / "none.ckpt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert missing == 2 and len(err) == 1 and "none.ckpt" in err[0]


def test_data_module_hands_vocab_over(tmp_path):
    data = SceneCaptionData(**{**_tiny_init_args("data"), "data_dir": str(tmp_path / "d")})
    data.setup("fit")
    captions = {c for ann in data.datasets["train"].annotations for c in ann["captions"]}
    assert all(w in data.vocab for c in captions for w in c.split())
    batch = next(iter(data.val_dataloader()))
    assert batch.objects is not None and np.all(batch.lengths.numpy() <= batch.tokens.shape[1])


def test_timm_checkpoint_needs_no_weights_file_to_caption(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), weights)
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "red", "circle"]
    system = CaptioningSystem(
        vocab=vocab,
        input_size=96,
        model=CaptionModelConfig(
            encoder=EncoderConfig(name="timm", backbone="resnet10t", weights_file=str(weights)),
            decoder=DecoderConfig(embed_dim=16, hidden_dim=16, attn_dim=8),
        ),
        decoding=CaptionDecodingConfig(beam_size=2, max_len=5),
    )
    ckpt = tmp_path / "timm.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams)}, ckpt)
    weights.unlink()  # the backbone's weights are inside the checkpoint
    image = _scene_pngs(tmp_path / "imgs", 1)[0]
    capsys.readouterr()
    assert caption_main([str(image), "--ckpt", str(ckpt), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["words"]) <= set(vocab[4:])
    assert len(record["attention_peaks"]) == len(record["words"])


def test_attention_entropy_words_must_be_in_the_vocabulary():
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "red", "circle"]
    args = {**_tiny_init_args("model"), "vocab": vocab, "input_size": 64, "attention_entropy": 0.1}
    with pytest.raises(UserError, match="attention_entropy_words: not in the vocabulary: zebra"):
        CaptioningSystem(**args, attention_entropy_words=["red", "zebra"])
    system = CaptioningSystem(**args, attention_entropy_words=["red", "circle"])
    assert system._entropy_ids.tolist() == [5, 6]


def test_attention_entropy_starts_at_its_epoch(tmp_path, monkeypatch):
    batch, args = _tiny_batch(tmp_path)
    system = CaptioningSystem(**{**args, "attention_entropy": 0.1}, attention_entropy_from_epoch=3)
    system.eval()  # no dropout: the two losses differ only by the term
    early = system._loss(batch)
    assert "entropy" not in early[1]
    monkeypatch.setattr(CaptioningSystem, "current_epoch", property(lambda self: 3))
    loss, parts = system._loss(batch)
    assert float(parts["entropy"]) > 0
    torch.testing.assert_close(loss, early[0] + 0.1 * parts["entropy"])


def test_context_word_term_predicts_each_word_from_its_attended_annotation(tmp_path):
    batch, args = _tiny_batch(tmp_path)
    plain = CaptioningSystem(**args)
    assert plain.context_head is None and "context_word" not in plain._loss(batch)[1]
    system = CaptioningSystem(**args, context_word_weight=0.5)
    system.train()
    # The term is the cross-entropy of the head over each step's attended annotation.
    torch.manual_seed(1)
    loss, parts = system._loss(batch)
    torch.manual_seed(1)
    output = system.model(batch.images, batch.tokens, batch.lengths, with_attention=True)
    contexts = torch.einsum("bthw,bchw->btc", output.attention.float(), output.features.float())
    logits = system.context_head(contexts)
    targets = batch.tokens[:, 1:]
    valid = targets != 0
    expected = torch.nn.functional.cross_entropy(logits[valid], targets[valid])
    torch.testing.assert_close(parts["context_word"], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loss, parts["nll"] + 0.5 * parts["context_word"], rtol=1e-5, atol=1e-5)
    # Its gradient reaches the attention's score (it moves the maps), not only the head.
    system.zero_grad()
    parts["context_word"].backward()
    score = system.model.decoder.attention.score.weight.grad
    assert score is not None and score.abs().sum() > 0
    # Saved and loaded with the system (the head is rebuilt from the hyperparameters).
    again = CaptioningSystem(**args, context_word_weight=0.5)
    again.load_state_dict(system.state_dict())
    with pytest.raises(UserError, match="context_word_weight: needs the show_attend_tell"):
        transformer = {**args["model"], "decoder": {**args["model"]["decoder"], "name": "transformer"}}
        CaptioningSystem(**{**args, "model": transformer}, context_word_weight=0.5)


def test_attention_box_supervision_is_minus_log_the_mass_in_the_named_box(tmp_path):
    batch, args = _tiny_batch(tmp_path)
    assert "attention_box" not in CaptioningSystem(**args)._loss(batch)[1]
    system = CaptioningSystem(**args, attention_box_weight=1.0)
    # Uniform attention: the mass in a box is the box's share of the image (the 12x12 grid tiles it),
    # averaged over the words of each noun phrase that names one object (size, colour, shape).
    steps = batch.tokens.shape[1] - 1
    uniform = torch.full((len(batch), steps, 12, 12), 1 / 144)
    expected = []
    for row, objects in enumerate(batch.objects):
        words = system.vocab.decode_words(batch.tokens[row].tolist())
        for j, word in enumerate(words):
            if word in SHAPES:
                owner = [o for o in objects if o["shape"] == word and o["colour"] == words[j - 1]]
                if len(owner) == 1:
                    x0, y0, x1, y1 = owner[0]["box"]
                    named = 3 if words[j - 2] in SIZES else 2
                    expected += [-np.log((x1 - x0) * (y1 - y0) / 96**2)] * named
    assert len(expected) >= len(batch)  # every caption names at least one object
    torch.testing.assert_close(
        system._attention_box_nll(uniform, batch),
        torch.tensor(float(np.mean(expected))),
        rtol=1e-4,
        atol=1e-5,
    )
    # Trained with the term, the words' attention moves into their boxes.
    optimizer = torch.optim.Adam(system.parameters(), lr=3e-3)
    system.train()
    start = float(system._loss(batch)[1]["attention_box"].detach())
    for _ in range(40):
        loss, parts = system._loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = float(parts["attention_box"].detach())
    assert final < 0.5 * start, (start, final)
    no_boxes = dataclasses.replace(batch, objects=None)
    with pytest.raises(UserError, match="attention_box_weight: needs object boxes"):
        system._loss(no_boxes)
