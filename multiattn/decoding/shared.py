"""Per-item memory shared by every hypothesis row of that item during beam search.

Beam search reorders the decoder state after every step, but a hypothesis only ever moves
between the rows of its own batch item, and every row of one item holds the same encoder memory
(an image grid, projected cross-attention keys / values). Copying those ``(N, S, ...)`` tensors
every step costs more than the attention itself. So the rows' owning items are tracked, and
memory is re-gathered only when some row would receive another item's memory: the first
expansion from ``B`` to ``B * K`` rows, or a search that drops rows.

Beam search keeps each item's ``K`` rows next to each other, so a consumer that can broadcast
over groups of consecutive rows (``SoftSpatialAttention``, ``additive_energy``) reads
:meth:`ItemMemory.shared`: one entry per item instead of one per row, ``K`` times less memory
to gather when rows are dropped and to read at every step.

Shape legend: ``B`` items, ``N`` hypothesis rows, ``G`` groups of ``N // G`` consecutive rows.
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

    ``memory.rows[i]`` is ``tensors[i]`` gathered for the current rows (``(N, ...)``), and
    ``memory.shared()[i]`` the same with one entry per group of consecutive rows of one item
    (``(G, ...)``). ``reorder(indices)`` returns the memory for the kept rows; both views are
    gathered lazily, and again only when a row changes item (see :func:`reindex_items`).

    Args:
        *tensors: ``(B, ...)`` per-item tensors.
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("ItemMemory: expected at least one tensor")
        self.base = tensors
        self.items = torch.arange(tensors[0].shape[0], device=tensors[0].device)  # (N,)
        self._rows: tuple[Tensor, ...] | None = tensors
        self._shared: tuple[Tensor, ...] | None = tensors

    def reorder(self, indices: Tensor) -> ItemMemory:
        """The memory of rows ``indices`` (``(N',)`` long); ``self`` is left unchanged."""
        moved = copy.copy(self)
        moved.items, unchanged = reindex_items(self.items, indices)
        if not unchanged:
            moved._rows = moved._shared = None
        return moved

    @property
    def rows(self) -> tuple[Tensor, ...]:
        """The memory of every row: ``(N, ...)`` per tensor."""
        if self._rows is None:
            self._rows = tuple(t.index_select(0, self.items) for t in self.base)
        return self._rows

    def shared(self) -> tuple[Tensor, ...]:
        """The memory of each group of consecutive rows that share an item: ``(G, ...)`` per tensor.

        ``G`` divides ``N`` and row ``r`` reads entry ``r // (N // G)``; when the rows do not form
        equal groups, ``G = N`` and this is :attr:`rows`.
        """
        if self._shared is None:
            groups, counts = torch.unique_consecutive(self.items, return_counts=True)  # (G,), (G,)
            if bool((counts == counts[0]).all()):
                self._shared = tuple(t.index_select(0, groups) for t in self.base)
            else:
                self._shared = self.rows
        return self._shared
