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


def test_shared_view_has_one_entry_per_group_of_rows():
    base = torch.randn(3, 4, 2)  # (B, S, C)
    memory = ItemMemory(base).reorder(torch.arange(3).repeat_interleave(4))  # K = 4
    (shared,) = memory.shared()
    assert torch.equal(shared, base)
    memory = memory.reorder(torch.tensor([4, 5, 6, 7, 8, 9, 10, 11]))  # item 0 dropped
    (shared,) = memory.shared()
    assert torch.equal(shared, base[1:])
    memory = memory.reorder(torch.tensor([0, 1, 2, 4]))  # 3 rows of item 1, 1 of item 2
    (shared,) = memory.shared()
    assert torch.equal(shared, base[[1, 1, 1, 2]])  # unequal groups: one entry per row
