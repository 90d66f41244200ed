"""A checkpoint written before the decoders shared the core's token decoder still loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from multiattn.checkpoint import load_system
from tasks.asr.system import ASRSystem

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY = yaml.safe_load((CONFIGS / "asr_tiny.yaml").read_text())["model"]["init_args"]


@pytest.mark.parametrize("decoder", ["transformer", "location"])
def test_checkpoint_with_the_former_embedding_name_loads(decoder, tmp_path: Path, one_thread) -> None:
    torch.manual_seed(0)
    system = ASRSystem(**{**TINY, "decoder": decoder})
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
