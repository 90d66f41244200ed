"""A checkpoint of the former flat hyper-parameter layout still loads (the one upgrade shim)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from multiattn.checkpoint import load_checkpoint, load_system
from multiattn.configs import to_plain
from multiattn.tasks.stn.system import FLAT_LAYOUT, STNSystem
from tests.helpers.old_checkpoint import flat_hyperparameters

TINY = Path(__file__).resolve().parents[3] / "configs" / "stn_tiny.yaml"
FLAT_ROOTS = ("model", "optim", "box_loss")  # the nested groups the former layout did not have
NEWER_KEYS = ("kind", "init_scale", "min_scale", "class_maps")  # localisation keys added since


def test_flat_layout_checkpoint_loads(tmp_path: Path, one_thread) -> None:
    torch.manual_seed(0)
    args = yaml.safe_load(TINY.read_text())["model"]["init_args"]
    args["model"]["transformer"]["transform"] = "projective"  # not the default: must survive the move
    args["optim"]["learning_rate"] = 0.0123
    system = STNSystem(**args)
    hparams = copy.deepcopy(dict(system.hparams))
    for key in NEWER_KEYS:  # the former layout predates them; loading gives their defaults
        hparams["model"]["transformer"]["localization"].pop(key)
    hparams.pop("localization_loss")
    old = flat_hyperparameters(hparams, FLAT_LAYOUT, FLAT_ROOTS, "tasks.stn.system.STNSystem")
    assert "transform" in old and "model" not in old  # the former layout
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": old}, path)

    loaded = load_system(STNSystem, path)
    assert loaded.model_config == system.model_config and loaded.optim == system.optim
    assert loaded.box_loss == system.box_loss and loaded.localization_loss == system.localization_loss
    for key, value in system.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    images = torch.rand(2, 1, 42, 42)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, system.eval()(images).logits)


def test_stored_hyperparameters_are_plain(tmp_path: Path) -> None:
    system = STNSystem(**yaml.safe_load(TINY.read_text())["model"]["init_args"])
    assert system.hparams["model"] == to_plain(system.model_config)
    path = tmp_path / "new.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams)}, path)
    assert load_checkpoint(path)["hyper_parameters"]["model"]["transformer"]["transform"] == "affine"
    assert load_system(STNSystem, path).model_config == system.model_config
