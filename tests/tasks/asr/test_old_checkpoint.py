"""A checkpoint written before the decoders shared the core's token decoder still loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from multiattn.checkpoint import load_system
from multiattn.tasks.asr.system import FLAT_LAYOUT, ASRSystem
from tests.helpers.configs import override
from tests.helpers.old_checkpoint import flat_hyperparameters

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY = yaml.safe_load((CONFIGS / "asr_tiny.yaml").read_text())["model"]["init_args"]


@pytest.mark.parametrize("decoder", ["transformer", "location"])
def test_checkpoint_with_the_former_embedding_name_loads(decoder, tmp_path: Path, one_thread) -> None:
    torch.manual_seed(0)
    system = ASRSystem(**override(TINY, model__decoder__name=decoder))
    renamed = {
        key.replace("model.decoder.embedding.", "model.decoder.embed."): value
        for key, value in system.state_dict().items()
    }
    assert "model.decoder.embed.weight" in renamed
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": renamed, "hyper_parameters": dict(system.hparams)}, path)
    loaded = load_system(ASRSystem, path)
    for key, value in system.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_flat_layout_checkpoint_loads(tmp_path: Path, one_thread) -> None:
    """Hyper-parameters written as one flat list of arguments rebuild the same system."""
    torch.manual_seed(0)
    system = ASRSystem(**override(TINY, model__encoder__name="transformer", decoding__beam_size=3))
    groups = ("model", "tokenizer", "language_model", "loss", "optim", "decoding")
    old = flat_hyperparameters(system.hparams, FLAT_LAYOUT, groups, "tasks.asr.system.ASRSystem")
    old["num_overlays"] = old.pop("overlay_count")
    assert old["tokenizer"] == "char" and old["encoder"] == "transformer" and "model" not in old
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": old}, path)

    loaded = load_system(ASRSystem, path, decode_ctc_weight=0.25)  # an override by its former name
    assert loaded.model_config == system.model_config and loaded.lm_config == system.lm_config
    assert loaded.tokenizer.vocab == system.tokenizer.vocab and loaded.decoding.beam_size == 3
    assert loaded.decoding.ctc_weight == 0.25 and loaded.hparams.overlay_count == system.hparams.overlay_count
    for key, value in system.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
