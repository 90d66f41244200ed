"""Per-item memory shared across beam rows equals gathering it for every row at every step."""

from __future__ import annotations

import torch

from multiattn.decoding import ItemMemory, reindex_items


def test_reindex_items_reports_rows_that_change_item():
    items = torch.tensor([0, 0, 1, 1])
    same, unchanged = reindex_items(items, torch.tensor([1, 0, 3, 2]))
    assert unchanged and torch.equal(same, items)
    swapped, unchanged = reindex_items(items, torch.tensor([2, 3, 0, 1]))
    assert not unchanged and torch.equal(swapped, torch.tensor([1, 1, 0, 0]))


def test_item_memory_follows_every_reorder():
    base = torch.randn(2, 3, 4)  # (B, S, C)
    memory = ItemMemory(base)
    reference = base
    for indices in ([0, 0, 0, 1, 1, 1], [2, 0, 1, 5, 3, 3], [3, 4, 5, 0, 1, 2], [0, 5]):
        indices = torch.tensor(indices)
        memory = memory.reorder(indices)
        reference = reference.index_select(0, indices)
        torch.testing.assert_close(memory.rows[0], reference, rtol=0, atol=0)
