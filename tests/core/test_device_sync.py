"""Length checks never read values off an accelerator (a read stalls the GPU's queue of kernels)."""

from __future__ import annotations

import pytest
import torch

from multiattn.masks import check_lengths


def test_check_lengths_reads_no_values_off_the_cpu() -> None:
    # A meta tensor has no values: any read (int(), .tolist(), .item()) raises.
    check_lengths(torch.empty(3, dtype=torch.long, device="meta"), 3, 10)
    with pytest.raises(ValueError, match="expected shape"):
        check_lengths(torch.empty(2, dtype=torch.long, device="meta"), 3, 10)
    with pytest.raises(ValueError, match="values must lie in"):
        check_lengths(torch.tensor([1, 11, 2]), 3, 10)  # on the CPU the values are checked
