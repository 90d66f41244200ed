"""The tiny speech recogniser the ASR tests share: ``configs/asr_tiny.yaml`` fitted in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def fit_asr_tiny(root: Path, *extra: str) -> list[str]:
    """Fit the tiny config on one thread with its data under ``root/data``, its logs under
    ``root/out`` and ``last.ckpt`` in ``root/ckpt``; returns the config arguments (for later runs).

    Module-scoped fixtures call it, so the function-scoped ``one_thread`` fixture does not cover it.
    """
    from multiattn.lightning_cli import build_cli

    common = [
        "-c",
        str(ROOT / "configs/asr_tiny.yaml"),
        f"--data.init_args.data_dir={root / 'data'}",
        f"--trainer.default_root_dir={root / 'out'}",
        f"--trainer.logger.init_args.save_dir={root / 'out'}",
        f"--trainer.callbacks.init_args.dirpath={root / 'ckpt'}",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)  # the config's other relative outputs/ paths (best.ckpt) land here
            build_cli(["fit", *common, *extra])
    finally:
        torch.set_num_threads(threads)
    return common
