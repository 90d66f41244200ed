"""SentencePieceTokenizer: id layout, round trip, trained on the training split only and
deterministically, carried by the checkpoint, a tiny fit + transcribe, words split at ``▁`` pieces."""

from __future__ import annotations

import base64
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from multiattn.checkpoint import load_system
from multiattn.io import UserError
from multiattn.tasks.asr import tokenizer as tokenizer_module
from multiattn.tasks.asr.alignment import attention_word_starts, ctc_word_spans
from multiattn.tasks.asr.decode import DecodeResult
from multiattn.tasks.asr.model import FRAME_SECONDS, frame_time
from multiattn.tasks.asr.system import ASRSystem
from multiattn.tasks.asr.tokenizer import WORD_START, SentencePieceTokenizer, train_sentencepiece
from tests.helpers.asr import fit_asr_tiny
from tests.helpers.configs import override

pytest.importorskip("sentencepiece")  # an optional extra: pip install "multiattn[sentencepiece]"

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
ROOT = Path(__file__).resolve().parents[3]
TINY = yaml.safe_load((ROOT / "configs/asr_tiny.yaml").read_text())["model"]["init_args"]
TEXTS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog sat there",
    "they're on the mat with the cat",
    "the mat is flat and the log is long",
    "that dog is the best dog",
] * 3
SIZE = 48


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    tokenizer = SentencePieceTokenizer(vocab_size=SIZE, model_type="bpe")
    tokenizer.train(TEXTS)
    return tokenizer


def test_round_trip_and_shared_id_layout(tok: SentencePieceTokenizer) -> None:
    assert tok.pieces([0, 1, 2]) == ["<blank>", "<eos>", "<unk>"]
    assert (tok.blank_id, tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 0, 1, 1, 2)
    assert len(tok) == SIZE and 3 < tok.num_pieces <= SIZE
    for text in ("the cat sat on the mat", "they're on the log", "a dog"):
        ids = tok.encode(text)
        assert min(ids) >= 3 and max(ids) < tok.num_pieces
        assert tok.decode(ids) == text
    assert len(tok.encode("the cat sat")) < len("the cat sat")  # pieces, not characters
    assert tok.decode([tok.bos_id, *tok.encode("the dog"), tok.blank_id, tok.unk_id, tok.eos_id]) == "the dog"
    assert tok.unk_id in tok.encode("the zebu")  # 'z' never occurs in TEXTS
    targets, lengths = tok.batch_encode(["the cat", "the dog sat on the mat"])
    assert targets.shape == (2, int(lengths.max())) and torch.all(targets[0, int(lengths[0]) :] == tok.pad_id)


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_training_is_deterministic(model_type: str) -> None:
    first = train_sentencepiece(TEXTS, vocab_size=40, model_type=model_type)
    assert first == train_sentencepiece(TEXTS, vocab_size=40, model_type=model_type)
    assert first != train_sentencepiece(TEXTS[:6] + ["quiz jazz"], vocab_size=40, model_type=model_type)


def test_user_errors_are_one_line(monkeypatch) -> None:
    untrained = SentencePieceTokenizer(vocab_size=SIZE)
    with pytest.raises(UserError, match="not trained yet"):
        untrained.encode("the cat")
    with pytest.raises(UserError, match="vocab_size 8"):
        train_sentencepiece(TEXTS, vocab_size=8)  # fewer than the alphabet
    with pytest.raises(UserError, match="not a valid serialized model"):
        SentencePieceTokenizer(model="bm90IGEgbW9kZWw=")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # import fails as if not installed
    with pytest.raises(UserError) as error:
        ASRSystem(**override(TINY, tokenizer__name="sentencepiece", tokenizer__vocab_size=SIZE))
    assert 'pip install "multiattn[sentencepiece]"' in str(error.value) and "\n" not in str(error.value)


def test_word_ranges_start_at_word_start_pieces(tok: SentencePieceTokenizer) -> None:
    text = "they're on the mat with the dog"
    ids = tok.encode(text)
    pieces = tok.pieces(ids)
    ranges = tok.word_ranges(ids)
    assert [w for w, _, _ in ranges] == text.split()
    assert all(pieces[first].startswith(WORD_START) for _, first, _ in ranges)
    assert ranges[0][1] == 0 and ranges[-1][2] == len(ids) - 1
    assert all(a[2] + 1 == b[1] for a, b in zip(ranges, ranges[1:]))  # contiguous, no token lost
    assert any(last > first for _, first, last in ranges)  # some word spans several pieces
    # A lone trailing "▁" and specials add no word; unk stays inside its word.
    space = tok._sp().piece_to_id(WORD_START)
    assert [w for w, _, _ in tok.word_ranges([*ids, tok.unk_id, space])] == text.split()


def _synthetic_alignment(ids: list[int], vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC log-probs with token k alone at frame 2k+1 (blank elsewhere) and attention row k on frame 3k."""
    frames = 3 * len(ids) + 2
    logits = torch.zeros(frames, vocab)
    logits[:, 0] = 5.0
    for k, token in enumerate(ids):
        logits[2 * k + 1, token] = 10.0
    attention = torch.zeros(len(ids) + 1, frames)  # (T + 1, S): the eos step too
    attention[torch.arange(len(ids)), 3 * torch.arange(len(ids))] = 1.0
    return logits.log_softmax(-1), attention


def test_word_times_and_start_metrics_follow_pieces(tok: SentencePieceTokenizer) -> None:
    text = "the dog sat on the flat log"
    ids = tok.encode(text)
    log_probs, attention = _synthetic_alignment(ids, len(tok))
    ranges = tok.word_ranges(ids)
    firsts = [first for _, first, _ in ranges]
    spans = ctc_word_spans(log_probs, ids, ranges, blank_id=tok.blank_id)
    assert spans is not None and [s.word for s in spans] == text.split()
    expected_ctc = [max(float(frame_time(2 * f + 1)) - FRAME_SECONDS / 2, 0.0) for f in firsts]
    assert [s.start for s in spans] == pytest.approx(expected_ctc)
    expected_att = [float(frame_time(3 * f)) for f in firsts]
    assert attention_word_starts(attention, ranges) == pytest.approx(expected_att)
    system = ASRSystem(
        **override(
            TINY,
            tokenizer__name="sentencepiece",
            tokenizer__vocab_size=SIZE,
            tokenizer__sentencepiece_model=tok.model,
        )
    )
    result = DecodeResult(
        tokens=ids,
        text=tok.decode(ids),
        ctc_log_probs=log_probs,
        features=torch.zeros(4 * log_probs.shape[0], 80),
        attention=attention,
        score=0.0,
    )
    truth = [{"word": w, "start": 0.1 * i, "end": 0.1 * i + 0.05} for i, w in enumerate(text.split())]
    errors = system.alignment_errors(result, truth)
    assert errors["ctc"] == pytest.approx(expected_ctc) and errors["attention"] == pytest.approx(expected_att)
    assert errors["true"] == pytest.approx([w["start"] for w in truth])


def _write_manifest(root: Path, name: str, texts: list[str]) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for index, text in enumerate(texts):
        audio = root / f"{name}_{index}.flac"
        soundfile.write(audio, (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000)
        lines.append(json.dumps({"audio_filepath": audio.name, "duration": 0.25, "text": text}))
    manifest = root / f"{name}.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_setup_trains_on_the_training_transcripts_only(tmp_path: Path) -> None:
    from multiattn.tasks.asr.data import ASRDataModule

    train = ["the cat sat on the mat", "a dog on a log", "the mat is flat"]
    held_out = ["quiz the jazzy vixen", "zebu quiz"]  # q, z, j, v, x, u, b occur only here
    data = ASRDataModule(
        source="manifest",
        train_manifests=[str(_write_manifest(tmp_path, "train", train))],
        val_manifests=[str(_write_manifest(tmp_path, "val", held_out[:1]))],
        test_manifests=[str(_write_manifest(tmp_path, "test", held_out[1:]))],
        batch_size=2,
    )
    data.setup("fit")
    data.setup("test")
    assert data.train_texts() == train
    system = ASRSystem(**override(TINY, tokenizer__name="sentencepiece", tokenizer__vocab_size=30))
    system.trainer = types.SimpleNamespace(datamodule=data)
    system.setup("validate")  # only fit trains
    assert not system.tokenizer.trained
    system.setup("fit")
    tok = system.tokenizer
    assert tok.trained and system.hparams.tokenizer["sentencepiece_model"] == tok.model
    assert base64.b64decode(tok.model) == train_sentencepiece(train, vocab_size=30)
    assert all(tok.unk_id in tok.encode(letter) for letter in "qzjvxub")
    assert not set("".join(tok.pieces(range(3, tok.num_pieces)))) & set("qzjvxub")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The tiny config with ``tokenizer: sentencepiece`` (40 pieces) after its two-epoch fit."""
    root = tmp_path_factory.mktemp("asr_sentencepiece")
    seen: list[list[str]] = []

    def spy(texts, **kwargs):
        seen.append(list(texts))
        return train_sentencepiece(seen[-1], **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokenizer_module, "train_sentencepiece", spy)
        common = fit_asr_tiny(
            root,
            "--model.init_args.tokenizer.name=sentencepiece",
            "--model.init_args.tokenizer.vocab_size=40",
        )
    return types.SimpleNamespace(root=root, common=common, seen=seen, ckpt=root / "ckpt" / "last.ckpt")


def _manifest_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


def test_fit_trains_once_on_the_training_split(fitted) -> None:
    corpus = fitted.root / "data" / "tiny-seed0"
    train = _manifest_texts(corpus / "train.jsonl")
    assert fitted.seen == [train]
    held_out = set(_manifest_texts(corpus / "validation.jsonl")) | set(_manifest_texts(corpus / "test.jsonl"))
    assert held_out - set(train) and not set(fitted.seen[0]) & (held_out - set(train))


def test_checkpoint_carries_the_model_and_load_system_rebuilds_it(fitted) -> None:
    checkpoint = torch.load(fitted.ckpt, map_location="cpu", weights_only=True)
    stored = checkpoint["hyper_parameters"]["tokenizer"]["sentencepiece_model"]
    assert isinstance(stored, str) and checkpoint["hyper_parameters"]["tokenizer"]["name"] == "sentencepiece"
    reference = SentencePieceTokenizer(vocab_size=40)
    reference.train(fitted.seen[0])
    assert stored == reference.model
    loaded = load_system(ASRSystem, fitted.ckpt)
    text = "please hold a knife badly"
    assert loaded.tokenizer.encode(text) == reference.encode(text)
    assert loaded.model.ctc_head.out_features == 40
    # A module built from the config (untrained tokenizer) takes the model in on_load_checkpoint.
    fresh = ASRSystem(**override(TINY, tokenizer__name="sentencepiece", tokenizer__vocab_size=40))
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.tokenizer.model == stored and fresh.hparams.tokenizer["sentencepiece_model"] == stored


def test_cli_test_rebuilds_the_tokenizer_from_the_checkpoint(fitted) -> None:
    from multiattn.lightning_cli import build_cli

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(fitted.root)  # where the fit's other callbacks wrote
            cli = build_cli(
                ["test", *fitted.common, "--ckpt_path", str(fitted.ckpt), "--trainer.limit_test_batches=1"]
            )
    finally:
        torch.set_num_threads(threads)
    stored = torch.load(fitted.ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert cli.model.tokenizer.model == stored["tokenizer"]["sentencepiece_model"]
    assert "test/wer" in cli.trainer.callback_metrics


def test_transcribe_gives_text_and_words_split_on_pieces(fitted, capsys, one_thread) -> None:
    from multiattn.tasks.asr.app import main

    audio = sorted((fitted.root / "data" / "tiny-seed0" / "test").glob("*.flac"))[:1]
    assert main([str(audio[0]), "--ckpt", str(fitted.ckpt), "--json", "--beam-size", "2"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["file"] == str(audio[0]) and record["text"]
    assert [w["word"] for w in record["words"]] == record["text"].split()
    starts = [w["start"] for w in record["words"]]
    assert starts == sorted(starts) and all(w["start"] <= w["end"] for w in record["words"])
