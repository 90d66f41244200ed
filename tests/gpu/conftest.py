"""GPU tests: skipped where CUDA is absent.

``MULTIATTN_GPU_TESTS_DEVICE=cpu`` runs them on the CPU instead (a dry run of the tests
themselves before a GPU run: every comparison is then CPU against CPU, so it checks the tests'
plumbing, not a device).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def target_device() -> torch.device | None:
    """The device under test: CUDA when available, the CPU when asked for, else ``None``."""
    forced = os.environ.get("MULTIATTN_GPU_TESTS_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda") if torch.cuda.is_available() else None


def pytest_collection_modifyitems(config, items) -> None:
    if target_device() is not None:
        return
    skip = pytest.mark.skip(reason="needs CUDA (MULTIATTN_GPU_TESTS_DEVICE=cpu runs them on the CPU)")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    found = target_device()
    assert found is not None  # collection skips every test otherwise
    return found
