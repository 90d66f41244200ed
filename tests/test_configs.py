"""Every YAML under configs/ parses, instantiates, and says how to run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiattn.lightning_cli import build_cli

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS, "configs/ holds no YAML"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_starts_with_its_command(config):
    first = config.read_text().lstrip().splitlines()[0]
    assert first.startswith("# multiattn ") and f"configs/{config.name}" in first, first


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing the config names may be created in the repository
    cli = build_cli(["-c", str(config)], run=False)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None
