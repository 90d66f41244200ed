"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread; two threads fight on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """``{task: (last.ckpt, data folder)}`` for the three tiny configs, one epoch each, trained once
    per session in a temporary folder (their default ``outputs/`` and ``data/`` paths under it).

    Each fit takes ~10 s on one thread; only tests that ask for this fixture pay for it.
    """
    import os
    from pathlib import Path

    from multiattn.lightning_cli import build_cli

    configs = Path(__file__).resolve().parents[1] / "configs"
    root = tmp_path_factory.mktemp("tiny")
    threads, cwd = torch.get_num_threads(), os.getcwd()
    torch.set_num_threads(1)  # session-scoped, so the function-scoped fixture does not cover it
    os.chdir(root)
    try:
        for config in ("stn_tiny", "captioning_tiny", "asr_tiny"):
            build_cli(["fit", "-c", str(configs / f"{config}.yaml"), "--trainer.max_epochs=1"])
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return {
        task: (root / "outputs" / config / "checkpoints" / "last.ckpt", root / "data" / config)
        for task, config in (("stn", "stn_tiny"), ("captioning", "captioning_tiny"), ("asr", "asr_tiny"))
    }
