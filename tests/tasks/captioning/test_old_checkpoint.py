"""A checkpoint of the former flat hyper-parameter layout still loads (the one upgrade shim),
and the flat override names the caption command passes still land in the nested configs."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from multiattn.checkpoint import load_system
from multiattn.tasks.captioning.system import FLAT_LAYOUT, CaptioningSystem
from tests.helpers.old_checkpoint import flat_hyperparameters

TINY = Path(__file__).resolve().parents[3] / "configs" / "captioning_tiny.yaml"
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "red", "circle"]
NESTED = ("model", "optim", "decoding")  # the groups the former layout did not have


def test_flat_layout_checkpoint_loads(tmp_path: Path, one_thread) -> None:
    torch.manual_seed(0)
    args = yaml.safe_load(TINY.read_text())["model"]["init_args"]
    args["model"]["decoder"]["name"] = "transformer"  # not the default: must survive the move
    args["decoding"]["beam_size"] = 4
    system = CaptioningSystem(**{**args, "vocab": VOCAB, "input_size": 64, "overlay_count": 3})
    old = flat_hyperparameters(
        system.hparams, FLAT_LAYOUT, NESTED, "tasks.captioning.system.CaptioningSystem"
    )
    old["num_overlays"] = old.pop("overlay_count")
    assert "decoder" in old and "model" not in old  # the former layout
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": old}, path)

    loaded = load_system(CaptioningSystem, path, encoder_pretrained=False, beam_size=2)
    assert loaded.model_config == system.model_config and loaded.optim == system.optim
    assert loaded.decoding.beam_size == 2 and loaded.hparams.overlay_count == 3
    for key, value in system.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    images = torch.randn(2, 3, 64, 64)
    system.eval()
    assert [c.tokens for c in loaded.generate(images)] == [
        c.tokens for c in system.generate(images, beam_size=2)
    ]
