"""Per-item memory shared by every hypothesis row of that item during beam search.

Beam search reorders the decoder state after every step, but a hypothesis only ever moves
between the rows of its own batch item, and every row of one item holds the same encoder memory
(an image grid, projected cross-attention keys / values). Copying those ``(N, S, ...)`` tensors
every step costs more than the attention itself. So the rows' owning items are tracked, and
memory is re-gathered only when some row would receive another item's memory: the first
expansion from ``B`` to ``B * K`` rows, or a search that drops rows.

Shape legend: ``B`` items, ``N`` hypothesis rows.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

__all__ = ["ItemMemory", "reindex_items"]


def reindex_items(items: Tensor, indices: Tensor) -> tuple[Tensor, bool]:
    """Follow a reorder of hypothesis rows.

    Args:
        items: ``(N,)`` the item each row belongs to.
        indices: ``(N',)`` rows kept, in their new order.

    Returns:
        ``(new_items (N',), unchanged)``: ``unchanged`` is ``True`` when every row still belongs to
        the item it belonged to before, so per-item memory needs no copy.
    """
    new_items = items.index_select(0, indices.to(items.device))
    return new_items, torch.equal(new_items, items)


class ItemMemory:
    """Tensors with one entry per batch item, seen per hypothesis row.

    ``memory.rows[i]`` is ``tensors[i]`` gathered for the current rows (``(N, ...)``);
    ``reorder(indices)`` returns the memory for the kept rows and re-gathers from the per-item
    tensors only when a row changes item (see :func:`reindex_items`).

    Args:
        *tensors: ``(B, ...)`` per-item tensors.
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("ItemMemory: expected at least one tensor")
        self.base = tensors
        self.items = torch.arange(tensors[0].shape[0], device=tensors[0].device)  # (N,)
        self.rows = tensors

    def reorder(self, indices: Tensor) -> ItemMemory:
        """The memory of rows ``indices`` (``(N',)`` long); ``self`` is left unchanged."""
        moved = copy.copy(self)
        moved.items, unchanged = reindex_items(self.items, indices)
        moved.rows = self.rows if unchanged else tuple(t.index_select(0, moved.items) for t in self.base)
        return moved
